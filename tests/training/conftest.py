"""Fixtures of the training tests: a tight analysis configuration (short answers, 4 small frames per
video), the real processor, a migrated SQLite store in a tmp folder. Helpers: tests/support/training.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from analysis import config as C
from service.settings import Settings
from tests.support.training import seed_feedback, tight_raw


@pytest.fixture(scope="session")
def tight_config_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("analysis") / "tight.json"
    path.write_text(json.dumps(tight_raw()))
    return path


@pytest.fixture(scope="session")
def tight_config(tight_config_path) -> C.AnalysisConfig:
    return C.load_config(tight_config_path)


@pytest.fixture(scope="session")
def processor():
    from keye_model.processor import KeyeProcessor

    return KeyeProcessor()


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def settings(tmp_path, tight_config_path, sample_clips) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'keye.db'}",
        analysis_config=tight_config_path,
        file_roots=[sample_clips[0].parent, tmp_path],
    )


@pytest.fixture
def engine(settings):
    from stores.db import engine_from, migrate

    eng = engine_from(settings)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def clip_dataset(tmp_path_factory, sample_clips, tight_config, processor):
    """A dataset from seeded feedback on real clips (built once per test module)."""
    from sqlmodel import Session

    from stores.db import engine_from, migrate
    from training.dataset import build_dataset, unused_feedback

    tmp = tmp_path_factory.mktemp("clips")
    s = Settings(
        data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'keye.db'}", file_roots=[sample_clips[0].parent]
    )
    eng = engine_from(s)
    migrate(eng)
    with Session(eng) as session:
        seed_feedback(session, sample_clips)
        ds = build_dataset(session, unused_feedback(session), processor, tight_config, s)
    eng.dispose()
    return ds
