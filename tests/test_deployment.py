"""The deployment descriptions are valid: compose validates the file, the Dockerfile copies every package."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")


def test_compose_file_is_valid_and_complete() -> None:
    done = subprocess.run(
        [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert {"kafka", "qdrant", "postgres", "redis", "api", "worker", "streams", "vector-sink"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name in ("api", "worker", "streams", "vector-sink"):
        env = services[name]["environment"]
        assert env["KEYE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["KEYE_QDRANT_URL"].startswith("http://qdrant")
    for service in services.values():  # published ports stay on loopback
        for port in service.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), published


def test_dockerfile_copies_every_package() -> None:
    """The image holds the packages of the wheel (pyproject's list), and not the development stack."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "devstack" not in packages and "cli" in packages
    for package in packages:
        name = package.rstrip("*")
        assert f"COPY {name} ./{name}" in dockerfile
    assert "devstack" not in dockerfile.replace("# devstack/", "")
