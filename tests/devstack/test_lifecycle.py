"""`keye stack` is idempotent and listens on loopback only (exercised on a private Redis and PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.stack import free_port, keye_stack


@pytest.mark.redis
@pytest.mark.postgres
def test_up_is_idempotent_status_and_down() -> None:
    # pytest's tmp folders are private to root; the postgres server user must reach its data folder.
    tmp_path = Path(tempfile.mkdtemp(prefix="keye-stack-test-", dir="/tmp"))
    os.chmod(tmp_path, 0o755)
    env = {
        "KEYE_STACK_DIR": str(tmp_path / "stack"),
        "KEYE_REDIS_PORT": str(free_port()),
        "KEYE_POSTGRES_PORT": str(free_port()),
    }
    try:
        first = keye_stack(env, "up", "redis", "postgres")
        assert first.returncode == 0, first.stdout + first.stderr
        pids = {n: (tmp_path / "stack" / f"{n}.pid").read_text() for n in ("redis", "postgres")}
        again = keye_stack(env, "up", "redis", "postgres")
        assert again.returncode == 0, again.stdout + again.stderr
        assert pids == {n: (tmp_path / "stack" / f"{n}.pid").read_text() for n in ("redis", "postgres")}

        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
        for port in (env["KEYE_REDIS_PORT"], env["KEYE_POSTGRES_PORT"]):
            addrs = [line.split()[3] for line in listening.splitlines() if line.split()[3].endswith(f":{port}")]
            assert addrs and all(a.startswith("127.0.0.1:") for a in addrs), addrs
        assert (tmp_path / "stack" / "logs" / "redis.log").exists()
        assert (tmp_path / "stack" / "logs" / "postgres.log").exists()
    finally:
        down = keye_stack(env, "down", "redis", "postgres")
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    status = keye_stack(env, "status")
    assert status.returncode == 1  # kafka of this private stack never ran; redis and postgres are down now
    assert "up (" not in status.stdout
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_unknown_service_is_a_clear_error(tmp_path: Path) -> None:
    done = keye_stack({"KEYE_STACK_DIR": str(tmp_path)}, "up", "zookeeper")
    assert done.returncode != 0
    assert "unknown service" in done.stdout + done.stderr


def test_settings_read_keye_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYE_KAFKA_BOOTSTRAP", "127.0.0.1:19999")
    monkeypatch.setenv("KEYE_DATA_DIR", "/tmp/keye-x")
    s = Settings()
    assert s.kafka_port == 19999
    assert s.resolved_database_url == "sqlite:////tmp/keye-x/keye.db"
    assert s.resolved_qdrant_path == Path("/tmp/keye-x/qdrant")
    assert s.model == "keye-tiny" and s.device == "cpu"
