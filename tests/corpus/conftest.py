"""A small generated corpus shared by the corpus tests (generated once per session, in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

import corpus
from corpus.labels import LabelledClip


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[LabelledClip]]:
    out = tmp_path_factory.mktemp("corpus") / "test-s1000"
    return out, corpus.make(out, seed=1000, clips=16, split="test")
