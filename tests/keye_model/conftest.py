"""Fixtures of the model tests: small random-weight Keye models (exact architecture)."""

from __future__ import annotations

import pytest
import torch

import keye_model


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny() -> keye_model.KeyeModel:
    return keye_model.load("keye-tiny")
