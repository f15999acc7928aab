"""From parsed answers to record fields: shot-to-time mapping, merging and the moderation policy."""

from analysis.merge import ChunkAnswers, moderation, products, summary, tags
from analysis.output import parse_output
from analysis.segments import Segment

SEGS = [Segment(0, 0.0, 2.0, (0, 1, 2, 3)), Segment(1, 2.0, 5.0, (4, 5)), Segment(2, 5.0, 6.5, (6, 7))]


def answers(segments=SEGS, **outputs):
    return ChunkAnswers(list(segments), {k: parse_output(v) for k, v in outputs.items()})


def mod(category="violence", severity=2, confidence=80, shot=1, reason="punch"):
    return (
        f'{{"categories": [{{"category": "{category}", "severity": {severity:d}, "confidence": {confidence:d}, '
        f'"evidence": [{{"shot": {shot:d}, "reason": "{reason}"}}]}}]}}'
    )


def test_tag_shots_become_time_ranges_per_run(tight_config):
    a = answers(
        tags='{"tags": [{"label": "Bike  Ride", "score": 90, "shots": [2, 0, 1]}, '
        '{"label": "sky", "score": 50, "shots": [0, 2]}, {"label": "noise", "score": 5, "shots": []}, '
        '{"label": "city", "score": 40, "shots": []}]}'
    )
    out = tags(tight_config, [a])
    got = [(t.label, t.score, t.start_s, t.end_s) for t in out]
    assert got == [
        ("bike ride", 0.9, 0.0, 6.5),
        ("sky", 0.5, 0.0, 2.0),
        ("sky", 0.5, 5.0, 6.5),
        ("city", 0.4, None, None),
    ]


def test_moderation_policy_follows_thresholds(tight_config):
    th = tight_config.thresholds
    assert th.flag_severity == 2 and th.flag_confidence == 0.6 and th.review_severity == 1
    m = moderation(tight_config, [answers(moderation="<think>a fight in shot 1</think>" + mod())])
    assert m.status == "flagged" and m.reasoning == "a fight in shot 1"
    ev = m.categories[0].evidence[0]
    assert (m.categories[0].category, m.categories[0].severity, m.categories[0].confidence) == ("violence", 2, 0.8)
    assert (ev.start_s, ev.end_s, ev.reason) == (2.0, 5.0, "punch")
    assert moderation(tight_config, [answers(moderation=mod(confidence=30))]).status == "needs_review"
    assert moderation(tight_config, [answers(moderation=mod(severity=1))]).status == "needs_review"
    assert moderation(tight_config, [answers(moderation=mod(severity=0))]).status == "clear"
    assert moderation(tight_config, [answers(moderation='{"categories": []}')]).status == "clear"
    broken = moderation(tight_config, [answers(moderation="<think>cut off")])
    assert broken.status == "needs_review" and broken.reasoning == "cut off" and broken.categories == []


def test_chunks_merge_by_category_and_keep_each_passes_evidence(tight_config):
    first = answers(SEGS[:2], moderation=mod(severity=1, confidence=90, shot=0, reason="a"))
    later = [Segment(0, 6.5, 9.0, (8, 9))]
    second = answers(later, moderation=mod(severity=3, confidence=70, shot=0, reason="b"))
    m = moderation(tight_config, [first, second])
    (flag,) = m.categories
    assert flag.severity == 3 and flag.confidence == 0.9
    assert [(e.start_s, e.end_s, e.reason) for e in flag.evidence] == [(0.0, 2.0, "a"), (6.5, 9.0, "b")]
    assert m.status == "flagged"


def test_summary_of_a_long_video_tells_each_pass():
    one = answers(SEGS[:1], summary='{"title": "T", "short": "S1", "long": "L1"}')
    two = answers([Segment(0, 2.0, 6.5, (4,))], summary='{"title": "U", "short": "S2", "long": "L2"}')
    s = summary([one, two])
    assert (s.title, s.short) == ("T", "S1") and s.long == "[0s-2s] L1\n[2s-6s] L2"
    assert summary([one]).long == "L1"


def test_products_merge_by_name():
    a = answers(
        products='{"products": [{"name": "Red Shoe", "category": "apparel", '
        '"attributes": [{"name": "colour", "value": "red"}], "shots": [1]}]}'
    )
    b = answers(
        [Segment(0, 6.5, 9.0, (8,))],
        products='{"products": [{"name": "red  shoe", "category": "apparel", "attributes": [], "shots": [0]}]}',
    )
    (p,) = products([a, b])
    assert p["name"] == "Red Shoe" and p["attributes"] == {"colour": "red"}
    assert p["moments"] == [{"start_s": 2.0, "end_s": 5.0}, {"start_s": 6.5, "end_s": 9.0}]
