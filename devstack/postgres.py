"""PostgreSQL from Debian's packages, on loopback, with its data in the stack folder.

The server refuses to run as root, so when we are root it runs as the `postgres` system user
that Debian's package creates. Authentication is `trust` on loopback: a development stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devstack.process import StackError, port_open, read_pid, spawn_detached, stop_pid, wait_until
from service.settings import Settings

NAME = "postgres"
DATABASE = "keye"


def _bin(name: str) -> str:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"PostgreSQL's {name} was not found; install the Debian package 'postgresql'")
    return found


def _user() -> str | None:
    return "postgres" if os.geteuid() == 0 else None


def _paths(s: Settings) -> dict[str, Path]:
    root = s.stack_dir.resolve()
    return {
        "data": root / "postgres",
        "pid": root / "postgres.pid",
        "log": root / "logs" / "postgres.log",
        "sock": root / "run",
    }


def url(s: Settings) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{s.postgres_port}/{DATABASE}"


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    user = _user()
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def up(s: Settings) -> None:
    p = _paths(s)
    if read_pid(p["pid"]) is not None and port_open(s.postgres_port):
        return
    if port_open(s.postgres_port):
        raise StackError(f"port {s.postgres_port} is taken by another process; set KEYE_POSTGRES_PORT")
    for d in (p["data"], p["sock"], p["log"].parent):
        d.mkdir(parents=True, exist_ok=True)
    if _user() is not None:
        shutil.chown(p["data"], "postgres", "postgres")
        shutil.chown(p["sock"], "postgres", "postgres")
        os.chmod(p["data"], 0o700)
        reach = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(p["data"])])
        if reach.returncode != 0:
            raise StackError(
                f"the postgres user cannot reach {p['data']}: make its parent folders "
                "traversable (chmod o+x) or set KEYE_STACK_DIR elsewhere"
            )
    if not (p["data"] / "PG_VERSION").exists():
        done = _run([_bin("initdb"), "-D", str(p["data"]), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        if done.returncode != 0:
            raise StackError(f"initdb failed:\n{done.stdout}{done.stderr}")
    # Log to stderr, which spawn_detached appends to our log folder (the server user may not own it).
    spawn_detached(
        [
            _bin("postgres"),
            "-D",
            str(p["data"]),
            "-p",
            str(s.postgres_port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={p['sock']}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ],
        p["log"],
        p["pid"],
        user=_user(),
    )
    wait_until(lambda: _ready(s), 60, f"PostgreSQL on 127.0.0.1:{s.postgres_port}", p["log"])
    _ensure_database(s)


def _ready(s: Settings) -> bool:
    return _run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(s.postgres_port)]).returncode == 0


def _ensure_database(s: Settings) -> None:
    import psycopg

    with psycopg.connect(
        f"host=127.0.0.1 port={s.postgres_port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")


def healthy(s: Settings) -> bool:
    return port_open(s.postgres_port) and _ready(s)


def down(s: Settings) -> bool:
    """Stop the server with `pg_ctl stop` (fast: clients are disconnected, then a clean shutdown;
    immediate if that does not end it) and check that it is gone. Returns whether it was running;
    raises StackError when it still runs. Signalling the pid file's process instead would hit the
    `runuser` wrapper, which SIGKILLs the server: crash recovery on the next start."""
    p = _paths(s)
    postmaster = _postmaster_pid(p["data"])
    if postmaster is None and read_pid(p["pid"]) is None:
        p["pid"].unlink(missing_ok=True)
        return False
    answers = []
    for mode in ("fast", "immediate"):
        wait_s = str(max(1, round(s.stack_stop_timeout_s)))
        done = _run([_bin("pg_ctl"), "stop", "-D", str(p["data"]), "-m", mode, "-w", "-t", wait_s])
        answers.append(f"pg_ctl stop -m {mode}: {(done.stdout + done.stderr).strip()}")
        if _gone(postmaster, s):
            break
    else:
        raise StackError(f"PostgreSQL (pid {postmaster}) still runs on port {s.postgres_port}:\n" + "\n".join(answers))
    try:  # the wrapper exits with its server
        wait_until(lambda: read_pid(p["pid"]) is None, 10, "the PostgreSQL wrapper process to exit")
    except StackError:
        stop_pid(p["pid"], timeout_s=5)
    p["pid"].unlink(missing_ok=True)
    return True


def _postmaster_pid(data: Path) -> int | None:
    """The live server's pid from its data folder (the first line of postmaster.pid)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie (exited, its parent not yet reaping) is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _gone(postmaster: int | None, s: Settings) -> bool:
    return (postmaster is None or not _alive(postmaster)) and not port_open(s.postgres_port)


def status(s: Settings) -> str:
    pid = read_pid(_paths(s)["pid"])
    return f"up (pid {pid}, {url(s)})" if pid and port_open(s.postgres_port) else "down"
