"""Field types shared by request and response models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, StringConstraints


def _utc(value: datetime) -> datetime:
    # SQLite returns naive datetimes; every time we store is UTC, so say so in the output.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]


# Bounds of the short strings a request carries, as the columns that store them.
Label = Annotated[str, StringConstraints(max_length=200)]  # a tag or a hashtag
LanguageTag = Annotated[str, StringConstraints(max_length=35)]  # BCP 47
CreatorId = Annotated[str, StringConstraints(max_length=128)]
