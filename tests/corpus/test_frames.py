"""The pixels agree with the labels: cuts and fades where the shots say, duplicates that look alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corpus.plan import FADE_S, plan_clip, plan_duplicate
from corpus.render import encode
from corpus.truth import labelled
from tests.support.corpus import decoded


def _boundaries(clip) -> list[tuple[int, str]]:
    return [(round(s.start_s * clip.fps), s.transition_in) for s in clip.shots[1:]]


def test_cuts_are_where_the_frames_change(small_corpus) -> None:
    out, clips = small_corpus
    checked = 0
    for clip in clips:
        f = decoded(out / clip.file)
        diff = np.concatenate([[0.0], np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))])
        calm = np.ones(len(f), bool)
        calm[0] = False
        for k, kind in _boundaries(clip):
            w = int(FADE_S * clip.fps) + 1 if kind == "fade" else 1
            calm[max(0, k - w) : k + w + 1] = False
        cuts = [diff[k] for k, kind in _boundaries(clip) if kind == "cut"]
        for k, kind in _boundaries(clip):
            if kind == "cut":
                assert diff[k] == diff[k - 1 : k + 2].max(), (clip.video_id, k)
        if cuts:
            # every labelled cut changes the picture far more than any frame away from a boundary
            assert min(cuts) > 5 * diff[calm].max(), (clip.video_id, cuts, diff[calm].max())
            checked += len(cuts)
    assert checked >= 10


def test_fades_go_through_black_at_the_labelled_time(small_corpus) -> None:
    out, clips = small_corpus
    fades = 0
    for clip in clips:
        f = decoded(out / clip.file)
        light = f.mean(axis=(1, 2, 3))
        for k, kind in _boundaries(clip):
            if kind == "fade":
                w = int(FADE_S * clip.fps)
                assert light[k] < 4.0 and light[k] == light[k - w : k + w + 1].min(), (clip.video_id, k)
                # both shots are back at full light once the fade window is over
                assert min(light[k - w - 1], light[k + w + 1]) > 10 * max(light[k], 1.0)
                fades += 1
    assert fades >= 3


def _thumbs(frames: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnails of whole frames, as a near-duplicate detector sees them."""
    return (
        np.stack(
            [
                np.asarray(
                    Image.fromarray(x.astype(np.uint8)).convert("L").resize((16, 16), Image.Resampling.BOX), np.float32
                )
                for x in frames
            ]
        )
        / 255.0
    )


def test_duplicates_of_every_kind_look_like_their_original(tmp_path: Path) -> None:
    original, other = plan_clip("val", 2000, 0), plan_clip("val", 2000, 1)
    assert original.duration_s >= 3.0  # so a sped-up copy can be drawn
    dups = {}
    for index in range(100, 140):
        d = plan_duplicate(original, "val", 2000, index)
        dups.setdefault(d.transform.kind, d)
    assert set(dups) == {"reencode", "crop", "speed", "watermark"}
    for p in (original, other, *dups.values()):
        encode(p, tmp_path / f"{p.video_id}.{p.ext}")
    base = _thumbs(decoded(tmp_path / f"{original.video_id}.{original.ext}"))
    unrelated = _thumbs(decoded(tmp_path / f"{other.video_id}.{other.ext}"))
    for kind, d in dups.items():
        label = labelled(d)
        assert (label.duplicate_of, label.duplicate_kind) == (original.video_id, kind)
        assert label.caption == labelled(original).caption
        copy = _thumbs(decoded(tmp_path / f"{d.video_id}.{d.ext}"))
        same_moment = base[[min(len(base) - 1, round(i * d.transform.speed)) for i in range(len(copy))]]
        alike = np.abs(copy - same_moment).mean()
        n = min(len(copy), len(unrelated))
        apart = np.abs(copy[:n] - unrelated[:n]).mean()
        assert alike < 0.05 and apart > 4 * alike, (kind, alike, apart)
        if kind == "speed":
            assert label.duration_s == pytest.approx(labelled(original).duration_s / d.transform.speed, abs=0.05)
        if kind == "crop":
            assert (label.width, label.height) != (original.width, original.height)


def test_the_corpus_marks_its_duplicates(small_corpus) -> None:
    out, clips = small_corpus
    ids = {c.video_id: c for c in clips}
    dups = [c for c in clips if c.duplicate_of]
    assert dups and all(not c.duplicate_of for c in clips if c.duplicate_kind is None)
    for c in dups:
        original = ids[c.duplicate_of]
        assert original.duplicate_of is None and original.split == c.split
        a, b = _thumbs(decoded(out / c.file)), _thumbs(decoded(out / original.file))
        n = min(len(a), len(b))
        if c.duplicate_kind in ("reencode", "watermark"):
            assert np.abs(a[:n] - b[:n]).mean() < 0.05
