"""The source checkout the `keye` command runs from: it holds what the wheel leaves out (devstack/, bench/)."""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
