"""Redis (the Celery broker) from Debian's packages, on loopback, data in the stack folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.process import StackError, port_open, read_pid, spawn_detached, stop_pid, wait_until
from service.settings import Settings

NAME = "redis"


def _paths(s: Settings) -> dict[str, Path]:
    root = s.stack_dir.resolve()
    return {"data": root / "redis", "pid": root / "redis.pid", "log": root / "logs" / "redis.log"}


def url(s: Settings) -> str:
    return f"redis://127.0.0.1:{s.redis_port}/0"


def up(s: Settings) -> None:
    p = _paths(s)
    if read_pid(p["pid"]) is not None and port_open(s.redis_port):
        return
    if port_open(s.redis_port):
        raise StackError(f"port {s.redis_port} is taken by another process; set KEYE_REDIS_PORT")
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server was not found; install the Debian package 'redis-server'")
    p["data"].mkdir(parents=True, exist_ok=True)
    spawn_detached(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(s.redis_port),
            "--dir",
            str(p["data"]),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        p["log"],
        p["pid"],
    )
    wait_until(lambda: healthy(s), 30, f"Redis on 127.0.0.1:{s.redis_port}", p["log"])


def healthy(s: Settings) -> bool:
    import redis

    return port_open(s.redis_port) and bool(redis.Redis.from_url(url(s), socket_timeout=2).ping())


def down(s: Settings) -> bool:
    return stop_pid(_paths(s)["pid"], timeout_s=30)


def status(s: Settings) -> str:
    pid = read_pid(_paths(s)["pid"])
    return f"up (pid {pid}, {url(s)})" if pid and port_open(s.redis_port) else "down"
