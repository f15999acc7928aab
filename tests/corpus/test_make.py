"""`corpus.make` / `keye corpus make`: deterministic, decodable, disjoint across splits, strict on its input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import corpus
from cli.main import app
from corpus.make import SEED_RANGES, CorpusError
from corpus.plan import plan_corpus
from corpus.render import encode
from keye_model.processor.config import MediaLimits
from keye_model.processor.decode import open_video
from keye_model.processor.video import load_video
from tests.support.corpus import decoded


def _frame_hashes(out: Path, clips) -> dict[str, str]:
    return {c.video_id: hashlib.sha256(decoded(out / c.file).tobytes()).hexdigest() for c in clips}


def test_same_seed_same_corpus_to_the_pixel(tmp_path: Path, small_corpus) -> None:
    out, clips = small_corpus
    again = corpus.make(tmp_path / "again", seed=1000, clips=16, split="test")
    assert again == clips
    assert (tmp_path / "again/labels.jsonl").read_bytes() == (out / "labels.jsonl").read_bytes()
    assert _frame_hashes(tmp_path / "again", again) == _frame_hashes(out, clips)
    other = corpus.make(tmp_path / "other", seed=1001, clips=4, split="test")
    assert not set(_frame_hashes(tmp_path / "other", other).values()) & set(_frame_hashes(out, clips).values())


def test_clips_decode_with_the_processor_as_labelled(small_corpus) -> None:
    out, clips = small_corpus
    assert {c.codec for c in clips} == {"h264", "vp9"}
    for c in clips:
        v = load_video(out / c.file, fps=2.0)
        assert v.video_fps == pytest.approx(c.fps) and v.total_frames == round(c.duration_s * c.fps)
        assert v.duration_s == pytest.approx(c.duration_s, abs=1.5 / c.fps)
        assert v.frames.shape[0] >= 4 and v.frames.shape[1] == 3
        container, stream = open_video(out / c.file, MediaLimits())
        with container:
            assert (stream.codec_context.width, stream.codec_context.height) == (c.width, c.height)
            assert stream.codec_context.name == c.codec
            assert container.format.name.split(",")[0] == ("mov" if c.codec == "h264" else "matroska")


def test_splits_never_share_content(tmp_path: Path, small_corpus) -> None:
    out, test = small_corpus
    hashes = {"test": json.loads((out / "corpus.json").read_text())["sha256"]}
    for split in ("train", "val"):
        seed = SEED_RANGES[split].start
        made = corpus.make(tmp_path / split, seed=seed, clips=5, split=split)
        assert all(c.split == split and c.video_id.startswith(f"{split}-s{seed}-") for c in made)
        assert not any(c.novel for c in made)
        hashes[split] = json.loads((tmp_path / split / "corpus.json").read_text())["sha256"]
    files = [set(h.values()) for h in hashes.values()]
    assert not files[0] & files[1] and not files[0] & files[2] and not files[1] & files[2]
    assert sum(len(f) for f in files) == len(set().union(*files))


@pytest.mark.parametrize(
    ("seed", "split", "clips", "why"),
    [
        (5, "test", 2, "not a test seed"),
        (1000, "train", 2, "not a train seed"),
        (2500, "dev", 2, "split must be"),
        (1000, "test", 0, "at least 1"),
    ],
)
def test_bad_requests_are_refused(tmp_path: Path, seed: int, split: str, clips: int, why: str) -> None:
    with pytest.raises(CorpusError, match=why):
        corpus.make(tmp_path / "out", seed=seed, clips=clips, split=split)
    assert not (tmp_path / "out").exists()


def test_a_used_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("not a corpus")
    with pytest.raises(CorpusError, match="not empty"):
        corpus.make(tmp_path, seed=1000, clips=1, split="test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_cli_makes_a_corpus(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["corpus", "make", str(tmp_path / "c"), "--seed", "2001", "--clips", "3", "--split", "val"]
    )
    assert result.exit_code == 0, result.output
    labels = corpus.load_labels(tmp_path / "c")
    assert [c.video_id for c in labels] == [f"val-s2001-{i:04d}" for i in range(3)]
    assert "clips" in result.output and all((tmp_path / "c" / c.file).is_file() for c in labels)
    refused = runner.invoke(app, ["corpus", "make", str(tmp_path / "d"), "--seed", "3", "--split", "val"])
    assert refused.exit_code == 2 and "val seeds are 2000..2999" in refused.output


def test_a_clip_encodes_the_same_whatever_the_process_encoded_before(tmp_path: Path) -> None:
    # x264's MB-tree once read memory left by earlier encodes: the same plan gave other bytes
    plans = plan_corpus("test", 1000, 15)
    first = tmp_path / "first.mp4"
    encode(plans[14], first)
    for p in (plans[1], plans[4], plans[9], plans[8]):
        encode(p, tmp_path / f"{p.video_id}.{p.ext}")
    later = tmp_path / "later.mp4"
    encode(plans[14], later)
    assert plans[14].codec == "h264" and first.read_bytes() == later.read_bytes()


def test_an_impossible_violating_share_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="violating_share"):
        corpus.make(tmp_path / "x", seed=0, clips=2, split="train", violating_share=0.99)
