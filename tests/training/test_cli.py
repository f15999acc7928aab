"""`keye train run|list|promote|rollback` against a SQLite store, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from tests.support.training import seed_feedback


def _keye(settings, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **extra,
        "KEYE_DATA_DIR": str(settings.data_dir),
        "KEYE_DATABASE_URL": settings.database_url,
        "KEYE_ANALYSIS_CONFIG": str(settings.analysis_config),
        "KEYE_MODEL": "keye-tiny",
        "KEYE_FILE_ROOTS": json.dumps([str(p) for p in settings.file_roots]),
        "COLUMNS": "250",
    }
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "train", *args],
        env=env,
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_promote_rollback_from_the_command_line(engine, settings, sample_clips, tmp_path: Path):
    with Session(engine) as s:
        seed_feedback(s, sample_clips)
    cfg = tmp_path / "train.json"
    cfg.write_text(
        json.dumps(
            {"eval_fraction": 0.34, "warmup_steps": 1, "cache_inputs": True, "lora": {"rank": 2, "targets": ["q_proj"]}}
        )
    )
    done = _keye(settings, "run", "--steps", "3", "--lr", "0.003", "--config", str(cfg))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "step 3: loss" in done.stdout
    out = json.loads(done.stdout[done.stdout.index("{") :])
    assert out["status"] == "succeeded" and out["examples"] == 9 and out["eval_loss_base"] > 0
    version = out["output_version"]

    listed = _keye(settings, "list")
    assert listed.returncode == 0 and version in listed.stdout and "candidate" in listed.stdout

    # a tolerance below zero counts any measured metric as a regression: the gate refuses
    refused = _keye(settings, "promote", version, KEYE_EVAL_TOLERANCE="-1")
    assert refused.returncode == 1 and "refused" in refused.stdout and "--force" in refused.stdout
    promoted = _keye(settings, "promote", version, "--force", KEYE_EVAL_TOLERANCE="-1")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert f"active: {version}" in promoted.stdout and "forced past the gate" in promoted.stdout
    assert "forced: regressed" in _keye(settings, "list").stdout
    back = _keye(settings, "rollback")
    assert back.returncode == 0 and "active: keye-tiny" in back.stdout
    again = _keye(settings, "rollback")
    assert again.returncode == 1 and "none to roll back to" in again.stdout
    unknown = _keye(settings, "promote", "nope")
    assert unknown.returncode == 1 and "unknown model version 'nope'" in unknown.stdout

    nothing = _keye(settings, "run", "--steps", "2")  # every event is used now
    assert nothing.returncode == 1 and "NotEnoughExamples" in nothing.stdout
    bad = _keye(settings, "run", "--steps", "0")
    assert bad.returncode == 2 and "steps must be >= 1" in bad.stdout + bad.stderr
