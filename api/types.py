"""Field types shared by response models."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; every time we store is UTC, so say so in the output.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
