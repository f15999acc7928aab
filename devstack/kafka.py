"""A real single-node Apache Kafka broker in KRaft mode, run from Maven Central's jars with Java 17.

Kafka 4.4 is the newest release this project is tested against: kafka-python, aiokafka and
faust-streaming all join groups, commit and produce idempotently against it
(tests/devstack/test_kafka_clients.py proves it on every CI run).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from devstack.process import StackError, port_open, read_pid, spawn_detached, stop_pid, wait_until
from service.settings import Settings

NAME = "kafka"


def _paths(s: Settings) -> dict[str, Path]:
    root = s.stack_dir.resolve()
    return {
        "data": root / "kafka" / "data",
        "config": root / "kafka" / "server.properties",
        "classpath": root / "kafka" / f"classpath-{s.kafka_version}.txt",
        "pid": root / "kafka.pid",
        "log": root / "logs" / "kafka.log",
    }


def classpath(s: Settings) -> str:
    """Resolve (once, then cached) the broker's classpath with Maven."""
    p = _paths(s)
    if p["classpath"].exists():
        cp = p["classpath"].read_text().strip()
        if cp and all(Path(j).exists() for j in cp.split(":")):
            return cp
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is needed to fetch Kafka's jars; install the Debian package 'maven'")
    p["classpath"].parent.mkdir(parents=True, exist_ok=True)
    pom = resources.files("devstack") / "kafka-pom.xml"
    with resources.as_file(pom) as pom_path:
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(pom_path),
            f"-Dkafka.version={s.kafka_version}",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={p['classpath']}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise StackError(
            f"Maven could not resolve Kafka {s.kafka_version}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return p["classpath"].read_text().strip()


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _write_config(s: Settings) -> Path:
    p = _paths(s)
    port, cport = s.kafka_port, s.kafka_controller_port
    p["config"].parent.mkdir(parents=True, exist_ok=True)
    p["config"].write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{cport}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={p['data']}",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "num.partitions=1",
                "",
            ]
        )
    )
    return p["config"]


def _java(cp: str, main: str, *args: str) -> list[str]:
    with resources.as_file(resources.files("devstack") / "log4j2.properties") as log_cfg:
        return ["java", "-Xms256m", "-Xmx768m", f"-Dlog4j2.configurationFile={log_cfg}", "-cp", cp, main, *args]


def up(s: Settings) -> None:
    p = _paths(s)
    if read_pid(p["pid"]) is not None and port_open(s.kafka_port):
        return
    if port_open(s.kafka_port):
        raise StackError(f"port {s.kafka_port} is taken by another process; set KEYE_KAFKA_BOOTSTRAP to a free port")
    if shutil.which("java") is None:
        raise StackError("Java 17 is needed to run Kafka; install the Debian package 'openjdk-17-jre-headless'")
    cp = classpath(s)
    config = _write_config(s)
    if not (p["data"] / "meta.properties").exists():
        p["data"].mkdir(parents=True, exist_ok=True)
        fmt = subprocess.run(
            _java(cp, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka's storage failed:\n{fmt.stdout}{fmt.stderr}")
    spawn_detached(_java(cp, "kafka.Kafka", str(config)), p["log"], p["pid"])
    wait_until(lambda: healthy(s), 120, f"Kafka on 127.0.0.1:{s.kafka_port}", p["log"])


def healthy(s: Settings) -> bool:
    if not port_open(s.kafka_port):
        return False
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=3000)
    try:
        admin.list_topics()
        return True
    finally:
        admin.close()


def down(s: Settings) -> bool:
    return stop_pid(_paths(s)["pid"], timeout_s=60)


def status(s: Settings) -> str:
    pid = read_pid(_paths(s)["pid"])
    return f"up (pid {pid}, 127.0.0.1:{s.kafka_port})" if pid and port_open(s.kafka_port) else "down"
