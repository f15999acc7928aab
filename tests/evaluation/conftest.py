"""Fixtures of the evaluation tests: one small generated corpus (8 clips, 3 violating, 3
near-duplicates: seed 1054 of the test split), shared by the module's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    from corpus.make import make

    out = tmp_path_factory.mktemp("eval") / "corpus"
    make(out, seed=1054, clips=8, split="test")
    return out


@pytest.fixture(scope="session")
def labelled(corpus_dir):
    from evaluation.labelled import from_corpus

    return from_corpus(corpus_dir)
