"""What the generator draws over a corpus: the concept counts, the held-out pairs, the formats.
Planning and labelling are pure functions of the seed, so these checks need no encoding."""

from __future__ import annotations

from collections import Counter

from corpus import concepts as C
from corpus.make import counts
from corpus.plan import is_novel, plan_corpus
from corpus.truth import labelled


def _pairs(plans) -> tuple[set, set]:
    colour_obj = {(s.colour, s.obj) for p in plans for s in p.shots}
    cue_scene = {(s.cue[0], s.scene) for p in plans for s in p.shots if s.cue}
    return colour_obj, cue_scene


def test_held_out_combinations_appear_only_in_test() -> None:
    train = plan_corpus("train", 0, 300) + plan_corpus("val", 2000, 150)
    colour_obj, cue_scene = _pairs(train)
    assert not colour_obj & C.NOVEL_COLOUR_OBJECT and not cue_scene & C.NOVEL_CUE_SCENE
    assert not any(p.novel for p in train)
    test = plan_corpus("test", 1000, 200)
    colour_obj, cue_scene = _pairs(test)
    assert colour_obj & C.NOVEL_COLOUR_OBJECT and cue_scene & C.NOVEL_CUE_SCENE
    assert all(labelled(p).novel == is_novel(p.shots) for p in test)
    assert 0.15 < sum(p.novel for p in test) / len(test) < 0.45


def test_a_modest_corpus_holds_every_concept() -> None:
    clips = [labelled(p) for p in plan_corpus("test", 1000, 120)]
    c = counts(clips)
    assert len(C.TAGS) >= 30 and set(c["tags"]) == set(C.TAGS)
    assert len(C.MODERATION) >= 6
    assert set(c["moderation"]) == {f"{cat}:{sev}" for cat in C.MODERATION for sev in C.SEVERITIES}
    assert 0.75 <= c["clean"] / c["clips"] <= 0.9
    assert c["duplicates"] > 0 and c["vp9"] > 0
    kinds = Counter(x.duplicate_kind for x in clips if x.duplicate_kind)
    assert len(kinds) >= 3
    assert any(x.record.products for x in clips)


def test_formats_follow_short_video_practice() -> None:
    clips = [labelled(p) for p in plan_corpus("train", 7, 200)]
    assert all(2.0 <= c.duration_s <= 20.0 and 24 <= c.fps <= 30 for c in clips)
    assert all(c.width % 2 == 0 and c.height % 2 == 0 for c in clips)
    vertical = sum(abs(c.width / c.height - 9 / 16) < 0.02 for c in clips)
    assert vertical / len(clips) > 0.6
    assert {(c.width, c.height) for c in clips} - {(180, 320), (360, 640)}  # a few odd sizes
    assert all(len(c.shots) >= 2 and all(s.end_s - s.start_s >= 0.66 for s in c.shots) for c in clips)
    assert any(s.transition_in == "fade" for c in clips for s in c.shots)


def test_a_training_set_can_ask_for_more_violating_clips() -> None:
    def violating(plans) -> float:
        return sum(any(s.cue for s in p.shots) for p in plans if p.duplicate_of is None) / len(plans)

    default, rich = plan_corpus("train", 0, 300), plan_corpus("train", 0, 300, violating_share=0.5)
    assert violating(default) < 0.25 and 0.4 < violating(rich) < 0.6
    assert plan_corpus("train", 0, 300, violating_share=0.17) == default  # the default is the platform's share
