"""The SQL engine the API uses: the shared tables plus the API branch, migrated to every head."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

import api.tables  # noqa: F401 - registers the API tables on the shared metadata (alembic env)
import stores.db
from service.settings import Settings


def migrate_heads(engine: sa.Engine) -> None:
    """Like stores.db.migrate, but to "heads": the API tables are their own alembic branch."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(stores.db.__file__).with_name("migrations")))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7413001)"))  # same lock as stores.db.migrate
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


def open_engine(settings: Settings, migrate: bool = True) -> sa.Engine:
    engine = stores.db.engine_from(settings)
    if migrate:
        migrate_heads(engine)
    return engine
