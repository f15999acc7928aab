"""The streams app's feedback trigger queues a training run without the training package: in a fresh
interpreter, a due check queues the run (KEYE_TRAIN_CONFIG validated, the base version registered) and
sends its job, and neither `training` nor torch is ever loaded. The broker is down here (nothing listens
on its port), so the queued run ends failed with the reason, as a send that fails always leaves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from service.train_config import TrainConfig
from stores.db import ModelVersion, TrainingRun

ROOT = Path(__file__).resolve().parents[2]

TRIGGER = """
import json, sys
from datetime import UTC, datetime
from sqlmodel import Session
from service.schemas import FeedbackEvent
from service.settings import Settings
from stores import db
from streams.app import _TrainingTrigger

settings = Settings()
engine = db.engine_from(settings)
db.migrate(engine)
with Session(engine) as session:
    payloads = {"tag_correction": {"add": ["bike"]}, "summary_edit": {"text": "One."},
                "engagement": {"metric": "views", "value": 1}}
    for i, (kind, payload) in enumerate(payloads.items()):
        db.write_feedback(session, FeedbackEvent(
            event_id=f"e{i}", video_id="v", kind=kind, actor="tester", payload=payload, at=datetime.now(UTC)))
    session.commit()
raised = None
try:
    _TrainingTrigger(settings, engine)._check()
except Exception as e:  # noqa: BLE001 - the parent asserts which
    raised = type(e).__name__
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"training", "torch"})
print(json.dumps({"raised": raised, "loaded": loaded}))
"""


def test_the_trigger_queues_a_run_without_loading_training_or_torch(tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"steps": 7, "lr": 5e-4}))
    url = f"sqlite:///{tmp_path / 'keye.db'}"
    env = {
        **os.environ,
        "KEYE_DATABASE_URL": url,
        "KEYE_DATA_DIR": str(tmp_path / "data"),
        "KEYE_MODEL": "keye-tiny",
        "KEYE_REDIS_URL": "redis://127.0.0.1:9/0",  # nothing listens there
        "KEYE_TRAIN_TRIGGER_EXAMPLES": "2",  # the two supervised events (engagement does not count)
        "KEYE_TRAIN_CONFIG": str(config),
    }
    done = subprocess.run(
        [sys.executable, "-c", TRIGGER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["raised"] in ("RuntimeError", "OperationalError")  # the broker refused: the trigger retries later
    engine = sa.create_engine(url)
    try:
        with Session(engine) as session:
            (run,) = session.exec(select(TrainingRun)).all()
            assert run.status == "failed" and "could not send the job to the broker" in (run.error or "")
            assert TrainConfig.from_dict(run.config) == TrainConfig(steps=7, lr=5e-4)
            base = session.get(ModelVersion, run.base_version)
            assert base is not None and base.version == "keye-tiny" and base.status == "active"
    finally:
        engine.dispose()
