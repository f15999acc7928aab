"""bench/preprocess.py keeps working: its baseline and ours agree on a tiny clip."""

from __future__ import annotations

import importlib.util

import numpy as np

from keye_model.processor import load_video
from tests.support.media import write_video
from tests.support.paths import REPO
from tests.support.video_reference import max_level_diff

BENCH = REPO / "bench" / "preprocess.py"


def test_bench_paths_agree(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_preprocess", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    clip = write_video(tmp_path / "c.mp4", n=30, fps=10, w=80, h=60, options={"bf": "2"})
    ref = bench.baseline(clip)
    v = load_video(clip)
    assert max_level_diff(ref, v.frames) <= 1
    ours = bench.ours_processor_stage(ref)  # the same frames through both processor stages
    assert ours.shape == (ref.shape[0] * (ref.shape[2] // 14) * (ref.shape[3] // 14), 3, 14, 14)
    official = bench.baseline_processor_stage(ref)  # None without the optional transformers package
    if official is not None:
        assert np.abs(ours.numpy() - official).max() <= 1e-6
