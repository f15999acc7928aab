"""The checkout and the test data, for tests at any folder depth (and scripts run from the checkout)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RELEASED = REPO / "tests" / "data" / "keye-vl-8b-preview"  # the vendored release files
