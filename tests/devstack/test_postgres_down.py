"""`keye stack down postgres` stops the server cleanly and says so only when it is gone (on a
private PostgreSQL: its own port and folder, never the shared one)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import postgres
from devstack.process import port_open
from service.settings import Settings
from tests.support.stack import free_port, keye_stack

pytestmark = pytest.mark.postgres


@pytest.fixture
def private_pg() -> Iterator[tuple[dict[str, str], Settings]]:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.fail("PostgreSQL's server binaries are missing (scripts/system-deps.sh installs them)")
    tmp = Path(tempfile.mkdtemp(prefix="keye-pg-down-", dir="/tmp"))  # the postgres user must reach it
    os.chmod(tmp, 0o755)
    env = {"KEYE_STACK_DIR": str(tmp / "stack"), "KEYE_POSTGRES_PORT": str(free_port())}
    settings = Settings(stack_dir=tmp / "stack", postgres_port=int(env["KEYE_POSTGRES_PORT"]))
    up = keye_stack(env, "up", "postgres")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield env, settings
    finally:
        pid = postgres._postmaster_pid(settings.stack_dir / "postgres")
        if pid is not None:
            os.killpg(os.getpgid(pid), signal.SIGCONT)
        postgres.down(settings)
        shutil.rmtree(tmp, ignore_errors=True)


def test_down_shuts_the_server_down_cleanly_with_a_client_connected(private_pg) -> None:
    import psycopg

    env, settings = private_pg
    data = settings.stack_dir / "postgres"
    server = postgres._postmaster_pid(data)
    client = psycopg.connect(
        f"host=127.0.0.1 port={settings.postgres_port} user=postgres dbname=postgres", autocommit=True
    )
    client.execute("SELECT 1")  # a session left open (a smart shutdown would wait for it forever)
    done = keye_stack(env, "down", "postgres")
    client.close()
    assert done.returncode == 0 and "postgres: stopped" in done.stdout, done.stdout + done.stderr
    log = (settings.stack_dir / "logs" / "postgres.log").read_text()
    assert "database system is shut down" in log  # a clean shutdown, not a killed postmaster
    assert "unexpected postmaster exit" not in log
    assert not port_open(settings.postgres_port) and not (data / "postmaster.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)
    again = keye_stack(env, "down", "postgres")
    assert again.returncode == 0 and "postgres: was not running" in again.stdout


def test_down_reports_a_server_that_does_not_stop(private_pg) -> None:
    env, settings = private_pg
    server = postgres._postmaster_pid(settings.stack_dir / "postgres")
    os.kill(server, signal.SIGSTOP)  # it cannot act on pg_ctl's signals
    try:
        done = keye_stack({**env, "KEYE_STACK_STOP_TIMEOUT_S": "2"}, "down", "postgres")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "postgres: failed to stop" in done.stdout and str(server) in done.stdout
        assert "stopped" not in done.stdout.replace("failed to stop", "")
        assert port_open(settings.postgres_port)
    finally:  # the runuser wrapper stops itself when its child stops: resume the whole group
        os.killpg(os.getpgid(server), signal.SIGCONT)
    postgres.down(settings)  # stops now (or its pending stop request already did)
    assert not port_open(settings.postgres_port)
