"""The README's main job: `keye analyze` stores a schema-valid analysis per clip and reports failures."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _keye(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEYE_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def test_analyze_stores_one_analysis_per_clip_and_reports_bad_files(tmp_path: Path, sample_clips: list[Path]) -> None:
    clip = min(sample_clips, key=lambda p: p.stat().st_size)  # the shortest real clip keeps this quick
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(512))
    done = _keye(tmp_path, "analyze", str(clip), str(bad))
    assert done.returncode == 1, done.stdout + done.stderr  # one file failed, and the command says so
    assert "failed" in done.stdout and clip.name in done.stdout
    db = sqlite3.connect(tmp_path / "data" / "keye.db")
    try:
        analyses = db.execute("SELECT video_id, model_version FROM analyses").fetchall()
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM videos GROUP BY status").fetchall())
    finally:
        db.close()
    assert len(analyses) == 1 and analyses[0][1] == "keye-tiny"
    assert statuses.get("failed") == 1
    # Running again is idempotent: still one analysis row for the clip.
    again = _keye(tmp_path, "analyze", str(clip))
    assert again.returncode == 0, again.stdout + again.stderr
    db = sqlite3.connect(tmp_path / "data" / "keye.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM analyses").fetchone()[0] == 1
    finally:
        db.close()


def test_analyze_without_inputs_is_a_usage_error(tmp_path: Path) -> None:
    done = _keye(tmp_path, "analyze")
    assert done.returncode == 2
    assert "--samples" in done.stdout + done.stderr
