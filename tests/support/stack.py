"""Helpers for the tests that run private stack servers through the `keye stack` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keye_stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`keye stack ARGS` with `env` over this process's environment (a private stack dir and ports)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "stack", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
