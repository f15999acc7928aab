"""Fixtures of the analysis tests: the real tokenizer and processor, the random-weight keye-tiny
model, and a configuration with tight limits so constrained answers stay short on CPU."""

from __future__ import annotations

import pytest
import torch

from analysis import config as C
from tests.support.analysis import tight_raw


@pytest.fixture(scope="session")
def tight_config() -> C.AnalysisConfig:
    return C.parse_config(tight_raw())


@pytest.fixture(scope="session")
def processor():
    from keye_model.processor import KeyeProcessor

    return KeyeProcessor()


@pytest.fixture(scope="session")
def tokenizer(processor):
    return processor.tokenizer


@pytest.fixture(scope="session")
def tiny_model():
    import keye_model

    torch.set_num_threads(1)
    return keye_model.load("keye-tiny", seed=0)


@pytest.fixture(scope="session")
def analyzer(tiny_model, processor, tight_config):
    from analysis import VideoAnalyzer

    return VideoAnalyzer(tiny_model, processor, tight_config, model_version="keye-tiny")
