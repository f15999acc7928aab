"""Decoding helpers shared by the corpus tests."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def decoded(path: Path) -> np.ndarray:
    """Every frame of a file, decoded by PyAV, as int16 (frames, height, width, 3)."""
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.int16)
