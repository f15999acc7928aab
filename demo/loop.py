"""`keye train demo-loop`: moderators decide, the model retrains, the model gets better, end to end on
the real stack.

    report = run_loop(settings, LoopSizes())        # needs `keye stack up` (Kafka, PostgreSQL, redis-server)

1. keye-demo is trained with one moderation category withheld (its clips never seen) and served.
2. Held-out clips of the test split, those showing the category and as many others, go through
   the pipeline: the API's ingest route -> Kafka -> the streams gate -> `keye worker` -> SQL and
   Qdrant (the API's vector sink).
3. Moderators act on each analysis through the API's moderation routes, from the clips' ground
   truth: a flagged video is claimed and confirmed or cleared, a clean one the model left clear is
   audited (claimed and cleared), and a violation it missed is reported (`/missed`). Every action
   is a `moderation_decision` on feedback.events, stored by the streams app, whose training trigger
   (KEYE_TRAIN_TRIGGER_EXAMPLES = one event per moderated clip) queues a run on Redis.
4. `keye train worker` executes it (KEYE_TRAIN_CONFIG: full-parameter fine-tuning on the feedback,
   rehearsing every task on clips of the variant's own train plan so nothing else is forgotten) and
   measures base and candidate with `keye eval` on another held-out set (KEYE_EVAL_CORPUS: other test
   clips, the category's among them); the candidate is promoted through the evaluation gate and a
   restarted worker serves it.
5. The before/after table (the category's recall and precision, every headline metric) is printed
   and written as JSON.

Everything the loop starts is private to it: a fresh PostgreSQL database on the stack's server,
topics under a fresh prefix on the stack's Kafka, its own redis-server (so no other training worker
takes its job), its data folder under KEYE_DATA_DIR/demo-loop/run-<time>; the labelled sets are
cached under KEYE_DATA_DIR/demo-loop/sets, the trained base model under KEYE_DATA_DIR/models.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from service.settings import Settings

log = logging.getLogger("demo.loop")
REPO = Path(__file__).resolve().parents[1]

# The fine-tuning a triggered run does (KEYE_TRAIN_CONFIG): every weight, so a small model can learn
# a category its vision tower was never trained to see.
TRAIN_CONFIG: dict[str, Any] = {
    "full": True,
    "steps": 100,
    "batch_size": 4,
    "lr": 5e-4,
    "warmup_steps": 5,
    "eval_fraction": 0.1,
    "max_events": 5000,
}


@dataclass(frozen=True)
class LoopSizes:
    category: str = "weapons"  # the withheld moderation category
    moderated_seed: int = 1500  # test-split seeds (1000..1999): clips no training ever saw
    moderated_with: int = 24  # moderated clips showing the category
    moderated_without: int = 24  # moderated clips not showing it (most of them clean)
    eval_seed: int = 1700
    eval_with: int = 20  # evaluation clips showing the category
    eval_without: int = 180
    rehearsal: int = 24  # clips of the variant's own train plan without the category, rehearsed by the run (0: none)
    served_checks: int = 2  # clips the restarted worker analyzes to show the version it serves
    train_config: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_CONFIG))
    wait_s: float = 3600.0  # the longest any one stage may take


class LoopError(RuntimeError):
    """A stage of the loop did not complete (its message says which, with the processes' logs)."""


# ---- the labelled sets -----------------------------------------------------------------------------


def shows(plan, category: str) -> bool:
    return any(s.cue is not None and s.cue[0] == category for s in plan.shots)


def labelled_set(out: Path, seed: int, category: str, with_: int, without: int, split: str = "test") -> Path:
    """The first `with_` clips of the corpus plan of (`split`, `seed`) that show `category` and the first
    `without` that do not (no near-duplicates: their originals may be left out), rendered and
    labelled like `keye corpus make`. Reused when it exists."""
    from corpus.labels import LABELS_FILE, write_labels
    from corpus.make import GENERATOR_VERSION, SEED_RANGES, counts
    from corpus.plan import plan_corpus
    from corpus.render import encode
    from corpus.truth import labelled

    if (out / LABELS_FILE).is_file():
        return out
    if seed not in SEED_RANGES[split]:
        raise LoopError(
            f"seed {seed} is not a {split} seed ({SEED_RANGES[split].start}..{SEED_RANGES[split].stop - 1})"
        )
    planned = 4 * (with_ + without)
    while True:  # plans are prefix-stable: a longer plan starts with the shorter one
        plans = [p for p in plan_corpus(split, seed, planned) if p.duplicate_of is None]
        having = [p for p in plans if shows(p, category)][:with_]
        lacking = [p for p in plans if not shows(p, category)][:without]
        if len(having) == with_ and len(lacking) == without:
            break
        planned *= 2
    chosen = sorted(having + lacking, key=lambda p: p.index)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    clips = []
    for n, plan in enumerate(chosen, 1):
        clip = labelled(plan)
        encode(plan, tmp / clip.file)
        clips.append(clip)
        if n % 25 == 0 or n == len(chosen):
            log.info("labelled set %s: %d/%d clips", out.name, n, len(chosen))
    write_labels(tmp, clips)
    info = {
        "generator": GENERATOR_VERSION,
        "seed": seed,
        "split": split,
        "selection": {"category": category, "with": with_, "without": without, "planned": planned},
        "counts": counts(clips),
    }
    (tmp / "corpus.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    tmp.rename(out)
    return out


# ---- what a moderator does with one analysis ----------------------------------------------------------


@dataclass(frozen=True)
class Actions:
    decision: dict[str, str] | None  # the body of a claimed case's decision, if any
    missed: list[tuple[str, int]]  # (category, severity) reported as missed, after the decision


def moderator_actions(flagged: list[str], truth: dict[str, int]) -> Actions:
    """From the model's flags (every category it listed) and the clip's true {category: severity}."""
    right = [c for c in flagged if c in truth]
    missed = [(c, s) for c, s in sorted(truth.items()) if c not in flagged]
    if not flagged:  # nothing to decide on; a clean clip is audited, a violating one reported
        return Actions(None if truth else {"decision": "clear", "note": "audited: nothing applies"}, missed)
    if not right:
        return Actions({"decision": "clear", "note": "not a violation"}, missed)
    if len(right) == len(flagged):
        return Actions({"decision": "confirm"}, missed)
    # one decision per case: confirm the worst true flag; the false ones stay as the model said
    return Actions({"decision": "confirm", "category": max(right, key=lambda c: truth[c])}, missed)


# ---- the private stack -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The loop's service processes (`python -m ...` in the repository), each logging to a file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *args], cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        log.info("started %s (pid %d): %s", name, self.procs[name].pid, " ".join(args))

    def stop(self, name: str, timeout_s: float = 60.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", name, timeout_s)
            proc.kill()
            proc.wait()
        log.info("stopped %s", name)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise LoopError(f"{name} exited with {proc.returncode}\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def wait_for(what: str, condition: Callable[[], Any], procs: Processes, timeout_s: float, every_s: float = 1.0) -> Any:
    """Poll `condition` until it returns something true; fail when a process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        procs.check()
        time.sleep(every_s)
    raise LoopError(
        f"timed out after {timeout_s:.0f} s waiting for {what}\n"
        + "\n".join(f"--- {n}\n{procs.tail(n)}" for n in procs.procs)
    )


def _reachable(settings: Settings, server_url: str) -> None:
    """What the loop runs on answers before it starts anything: PostgreSQL, Kafka, a redis-server to run."""
    import shutil

    import sqlalchemy as sa
    from kafka import KafkaAdminClient

    hint = "start the stack with `keye stack up`"
    engine = sa.create_engine(server_url, connect_args={"connect_timeout": 5})
    try:
        engine.connect().close()
    except sa.exc.SQLAlchemyError as e:
        raise LoopError(f"PostgreSQL at {server_url} does not answer ({type(e).__name__}); {hint}") from None
    finally:
        engine.dispose()
    try:
        KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000).close()
    except Exception as e:  # noqa: BLE001 - kafka-python raises several types for "no broker"
        raise LoopError(f"Kafka at {settings.kafka_bootstrap} does not answer ({type(e).__name__}); {hint}") from None
    if shutil.which("redis-server") is None:
        raise LoopError("redis-server was not found (the loop runs its own); install the Debian package redis-server")


def _database(server_url: str, name: str, drop: bool = False) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(
                sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if drop else f'CREATE DATABASE "{name}"')
            )
    finally:
        admin.dispose()
    return sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


# ---- the loop ----------------------------------------------------------------------------------------


def run_loop(
    settings: Settings,
    sizes: LoopSizes = LoopSizes(),
    spec=None,
    *,
    postgres_url: str | None = None,
    out: Path | None = None,
    keep: bool = False,
) -> dict:
    """The whole loop; returns the report (also written to `out`, default the run folder's report.json).
    `spec` is the keye-demo recipe (training.demo_spec.DEMO by default); the category is withheld from it.
    `postgres_url`: the server the loop's database is made on (default the stack's); `keep` keeps that
    database afterwards."""
    from corpus.concepts import MODERATION
    from devstack import postgres
    from devstack import redis as stack_redis
    from training.demo_spec import DEMO

    if sizes.category not in MODERATION:
        raise LoopError(f"the corpus draws no {sizes.category!r} clips; withhold one of {', '.join(MODERATION)}")
    server = postgres_url or postgres.url(settings)
    _reachable(settings, server)
    spec = (spec or DEMO).with_(withheld=(sizes.category,))
    root = (Path(settings.data_dir) / "demo-loop").resolve()
    moderated, held_out = (
        labelled_set(
            root / "sets" / f"{kind}-s{seed}-{sizes.category}-{n_with}-{n_without}",
            seed,
            sizes.category,
            n_with,
            n_without,
        )
        for kind, seed, n_with, n_without in (
            ("moderated", sizes.moderated_seed, sizes.moderated_with, sizes.moderated_without),
            ("eval", sizes.eval_seed, sizes.eval_with, sizes.eval_without),
        )
    )
    if sizes.rehearsal:  # what the variant learned from, minus the category: so the run forgets nothing else
        rehearsal = labelled_set(
            root / "sets" / f"rehearsal-s{spec.train_seed}-no-{sizes.category}-{sizes.rehearsal}",
            spec.train_seed,
            sizes.category,
            0,
            sizes.rehearsal,
            split="train",
        )
        sizes = replace(sizes, train_config={**sizes.train_config, "replay_corpus": str(rehearsal)})
    run_dir = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    tag = f"demoloop{uuid.uuid4().hex[:8]}"
    database = _database(server, tag)
    redis_settings = Settings(stack_dir=run_dir / "redis", redis_port=free_port())
    loop = None
    try:
        base = _served_variant(settings.model_copy(update={"database_url": database}), spec, sizes.category)
        stack_redis.up(redis_settings)
        loop = _Loop(
            settings, sizes, base, moderated, held_out, run_dir, tag, database, stack_redis.url(redis_settings)
        )
        report = loop.run()
    finally:
        if loop is not None:
            loop.close()
        stack_redis.down(redis_settings)
        if not keep:
            _database(server, tag, drop=True)
    report.update(run_dir=str(run_dir), database=tag)
    path = Path(out) if out is not None else run_dir / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    report["path"] = str(path)
    return report


def _served_variant(settings: Settings, spec, category: str) -> Path:
    """Step 1: keye-demo trained without `category` (cached under KEYE_DATA_DIR/models), registered in
    the loop's database as the active version, so the workers serve it and runs start from it."""
    from sqlmodel import Session

    from stores.db import ModelVersion, migrated_engine
    from training import registry
    from training.demo import ensure_demo

    name = f"keye-demo-no-{category.replace('_', '-')}"
    log.info("1/5 the base model: %s, trained without %s clips", name, category)
    folder = Path(settings.data_dir).resolve() / "models" / name
    s = settings.for_model(str(folder))
    base = Path(ensure_demo(s, spec, name=name, progress=True)).resolve()
    with migrated_engine(s) as engine, Session(engine) as session:
        row = session.get(ModelVersion, name)
        if row is None:
            registry.ensure_base(session, s.for_model(str(base)))
        elif row.status != "active":
            registry.promote(session, name)  # the first active version: nothing to compare with
        session.commit()
        active = registry.active_version(session)
        if active is None or active.version != name:
            raise LoopError(f"{name} is not the active version of the loop's registry")
    return base


class _Loop:
    def __init__(
        self,
        settings: Settings,
        sizes: LoopSizes,
        base: Path,
        moderated: Path,
        held_out: Path,
        run_dir: Path,
        tag: str,
        database: str,
        redis_url: str,
    ) -> None:
        from corpus.labels import load_labels
        from service.settings import MODEL_ANALYSIS_CONFIG
        from stores.db import engine_from, migrate
        from training.demo_spec import ANALYSIS_CONFIG

        own = base / MODEL_ANALYSIS_CONFIG  # the configuration the model was trained for
        analysis_config = own if own.is_file() else ANALYSIS_CONFIG

        self.sizes, self.base, self.run_dir = sizes, base, run_dir
        self.moderated_dir, self.held_out_dir = moderated, held_out
        self.moderated = load_labels(moderated)
        self.held_out = load_labels(held_out)
        topics = {
            f"topic_{k}": f"{tag}.{v}"
            for k, v in (
                ("ingest", "videos.ingest"),
                ("work", "videos.work"),
                ("analyzed", "videos.analyzed"),
                ("flags", "moderation.flags"),
                ("feedback", "feedback.events"),
                ("dlq", "videos.dlq"),
            )
        }
        train_config = run_dir / "train-config.json"
        train_config.write_text(json.dumps(sizes.train_config, indent=1) + "\n", encoding="utf-8")
        self.port = free_port()
        roots = [str(moderated / "clips"), str(held_out / "clips")]
        self.settings = settings.model_copy(
            update={
                "model": str(base),
                "analysis_config": analysis_config,
                "data_dir": run_dir / "data",
                "database_url": database,
                "qdrant_url": None,
                "qdrant_path": None,
                "redis_url": redis_url,
                "file_roots": [Path(r) for r in roots],
                "train_trigger_examples": len(self.moderated),
                "train_config": train_config,
                "eval_corpus": held_out,
                "eval_limit": len(self.held_out),
                **topics,
            }
        )
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYE_")}
        env.update(
            {
                "KEYE_MODEL": str(base),
                "KEYE_ANALYSIS_CONFIG": str(analysis_config),
                "KEYE_DATA_DIR": str(s.data_dir),
                "KEYE_DATABASE_URL": database,
                "KEYE_REDIS_URL": redis_url,
                "KEYE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
                "KEYE_FILE_ROOTS": json.dumps(roots),
                "KEYE_TRAIN_TRIGGER_EXAMPLES": str(s.train_trigger_examples),
                "KEYE_TRAIN_CONFIG": str(train_config),
                "KEYE_EVAL_CORPUS": str(held_out),
                "KEYE_EVAL_LIMIT": str(s.eval_limit),
                "KEYE_EVAL_TOLERANCE": str(s.eval_tolerance),
                "KEYE_DEVICE": s.device,
                "KEYE_DTYPE": s.dtype,
                "PYTHONPATH": str(REPO),
                **{f"KEYE_{k.upper()}": v for k, v in topics.items()},
            }
        )
        if s.kernels:
            env["KEYE_KERNELS"] = s.kernels
        self.procs = Processes(env, run_dir / "logs")
        self.engine = engine_from(s)
        migrate(self.engine)

    def close(self) -> None:
        self.procs.stop_all()
        self.engine.dispose()

    # -- helpers --
    def session(self):
        from sqlmodel import Session

        return Session(self.engine)

    def api(self, method: str, path: str, key: str, **kw) -> dict:
        import httpx

        r = httpx.request(
            method, f"http://127.0.0.1:{self.port}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60, **kw
        )
        if r.status_code >= 300:
            raise LoopError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    def analyses(self, video_ids: list[str]) -> dict[str, Any]:
        from sqlmodel import col, select

        from stores.db import Analysis, Video

        with self.session() as s:
            rows = {a.video_id: a for a in s.exec(select(Analysis).where(col(Analysis.video_id).in_(video_ids)))}
            failed = {
                v.video_id: v.error
                for v in s.exec(select(Video).where(col(Video.video_id).in_(video_ids), Video.status == "failed"))
            }
            for a in rows.values():
                s.expunge(a)
        if failed:
            raise LoopError(f"the pipeline failed on {len(failed)} clip(s): {failed}")
        return rows

    def submit(self, key: str, clips: list, folder: Path, prefix: str = "") -> list[str]:
        ids = []
        for clip in clips:
            vid = prefix + clip.video_id
            self.api(
                "POST",
                "/v1/videos",
                key,
                json={"uri": (folder / clip.file).as_uri(), "video_id": vid, "title": f"clip {clip.video_id}"},
            )
            ids.append(vid)
        return ids

    # -- the stages --
    def run(self) -> dict:
        from service.kafka import ensure_topics
        from training import registry

        s, sizes = self.settings, self.sizes
        ensure_topics(s)
        with self.session() as session:
            from api.keys import create_key

            self.ingest_key = create_key(session, ["ingest"], name="demo-loop-ingest")[1]
            self.moderator_key = create_key(session, ["moderator"], name="demo-moderator")[1]
            active = registry.active_version(session)
            if active is None:  # prepare() registered keye-demo as the active version
                raise LoopError("the registry has no active model version to start from")
            base_version = active.version
        tag = s.topic_ingest.split(".")[0]
        self.procs.start("streams", ["-m", "streams", "--app-id", f"{tag}-streams", "--loglevel", "info"])
        self.procs.start("worker", ["-m", "workers", "--group", f"{tag}-workers", "--batch-size", "1"])
        self.procs.start("api", ["-m", "cli.main", "api", "--port", str(self.port)])
        wait_for("the API", self._api_up, self.procs, 120)

        log.info(
            "2/5 %d held-out clips (%d showing %s) through ingest -> streams -> worker -> SQL/Qdrant",
            len(self.moderated),
            sizes.moderated_with,
            sizes.category,
        )
        ids = self.submit(self.ingest_key, self.moderated, self.moderated_dir)
        started = time.monotonic()
        analyses = wait_for(
            f"{len(ids)} analyses",
            lambda: (a := self.analyses(ids)) and len(a) == len(ids) and a,
            self.procs,
            sizes.wait_s,
            every_s=2.0,
        )
        before_flags = self._flag_counts(analyses)
        log.info("analyzed %d clips in %.0f s by %s", len(ids), time.monotonic() - started, base_version)

        log.info("3/5 moderators act on every analysis through the API")
        events, acted = self._moderate(analyses)
        wait_for(f"the {events} feedback events stored", lambda: self._stored_events() >= events, self.procs, 300)
        run_id = wait_for("the trigger's training run", self._queued_run, self.procs, 120)
        log.info(
            "the streams app's trigger queued %s after %d events (threshold %d)",
            run_id,
            events,
            s.train_trigger_examples,
        )

        log.info("4/5 `keye train worker` fine-tunes %s and evaluates base and candidate", base_version)
        self.procs.start("train-worker", ["-m", "cli.main", "train", "worker"])
        run = wait_for(f"training run {run_id}", lambda: self._finished(run_id), self.procs, sizes.wait_s, every_s=3.0)
        self.procs.stop("train-worker")
        if run.status != "succeeded":
            raise LoopError(f"training run {run_id} failed: {run.error}\n{self.procs.tail('train-worker')}")
        version = run.output_version
        promotion = self._promote(version)
        served = None
        if promotion["promoted"]:
            log.info("restarting the worker; it serves %s", version)
            self.procs.stop("worker")
            self.procs.start("worker", ["-m", "workers", "--group", f"{tag}-workers", "--batch-size", "1"])
            checks = self.held_out[: sizes.served_checks]
            new_ids = self.submit(self.ingest_key, checks, self.held_out_dir, prefix="served-")
            got = wait_for(
                "the restarted worker's analyses",
                lambda: (a := self.analyses(new_ids)) and len(a) == len(new_ids) and a,
                self.procs,
                sizes.wait_s,
                every_s=2.0,
            )
            served = {vid: a.model_version for vid, a in got.items()}
        return self._report(run, base_version, version, promotion, served, events, acted, before_flags)

    def _api_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _flag_counts(self, analyses: dict) -> dict[str, int]:
        truth = {c.video_id: {f.category for f in c.record.moderation.categories} for c in self.moderated}
        cat = self.sizes.category
        showing = [v for v in analyses if cat in truth[v]]
        return {
            "clips": len(analyses),
            "showing": len(showing),
            "flagged_showing": sum(a.moderation_status == "flagged" for v, a in analyses.items() if v in showing),
        }

    def _moderate(self, analyses: dict) -> tuple[int, dict[str, int]]:
        truth = {c.video_id: {f.category: f.severity for f in c.record.moderation.categories} for c in self.moderated}
        key, events = self.moderator_key, 0
        acted = {"confirm": 0, "clear": 0, "audit": 0, "missed": 0}
        for vid, a in sorted(analyses.items()):
            case = f"/v1/moderation/cases/{a.analysis_id}"
            flagged = [f["category"] for f in self.api("GET", case, key)["flags"]]
            act = moderator_actions(flagged, truth[vid])
            if act.decision is not None:
                self.api("POST", case + "/claim", key)
                self.api("POST", case + "/decision", key, json=act.decision)
                events += 1
                acted["audit" if not flagged else act.decision["decision"]] += 1
            for category, severity in act.missed:
                self.api(
                    "POST",
                    case + "/missed",
                    key,
                    json={"category": category, "severity": severity, "note": f"missed: {category}"},
                )
                events += 1
                acted["missed"] += 1
        log.info("moderators: %s (%d feedback events)", acted, events)
        return events, acted

    def _stored_events(self) -> int:
        from sqlmodel import func, select

        from stores.db import FeedbackRow

        with self.session() as s:
            return s.exec(select(func.count()).select_from(FeedbackRow)).one()

    def _queued_run(self) -> str | None:
        from sqlmodel import select

        from stores.db import TrainingRun

        with self.session() as s:
            runs = list(s.exec(select(TrainingRun)))
        if len(runs) > 1:
            raise LoopError(f"the trigger queued {len(runs)} runs, not one")
        return runs[0].run_id if runs else None

    def _finished(self, run_id: str):
        from stores.db import TrainingRun

        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            if run.status in ("succeeded", "failed"):
                s.expunge(run)
                return run
        return None

    def _promote(self, version: str) -> dict:
        from stores.db import ModelVersion
        from training import registry

        with self.session() as s:
            try:
                row = registry.promote(s, version, tolerance=self.settings.eval_tolerance)
            except registry.PromotionRefused as e:
                s.rollback()
                log.warning("%s", e)
                verdict = registry.gate(
                    s, s.get(ModelVersion, version), registry.active_version(s), self.settings.eval_tolerance
                )
                return {"promoted": False, **verdict}
            verdict = dict(row.metrics["promotion"])
            s.commit()
        log.info("promoted %s: %s", version, verdict["reason"])
        return {"promoted": True, **verdict}

    def _report(
        self,
        run,
        base_version: str,
        version: str,
        promotion: dict,
        served: dict | None,
        events: int,
        acted: dict,
        before_flags: dict,
    ) -> dict:
        from evaluation.store import latest
        from stores.db import ModelVersion

        cat = self.sizes.category
        with self.session() as s:
            ev = (s.get(ModelVersion, version).metrics or {}).get("eval") or {}
            dataset = (ev.get("dataset") or {}).get("id")
            reports = {v: latest(s, v, dataset) for v in (base_version, version)}
        base_report, new_report = reports[base_version], reports[version]
        if base_report is None or new_report is None:
            raise LoopError(f"the run left no evaluation reports on {self.settings.eval_corpus} for both versions")
        before, after = _figures(base_report.report, cat), _figures(new_report.report, cat)
        return {
            "category": cat,
            "base_version": base_version,
            "version": version,
            "run_id": run.run_id,
            "run": {
                "examples": run.examples,
                **{
                    k: (run.metrics or {}).get(k)
                    for k in (
                        "events",
                        "replayed",
                        "steps",
                        "train_loss_first",
                        "train_loss_last",
                        "eval_loss_base",
                        "eval_loss",
                        "seconds",
                    )
                },
            },
            "train_config": self.sizes.train_config,
            "moderation": {
                "clips": len(self.moderated),
                "events": events,
                "actions": acted,
                "trigger_threshold": self.settings.train_trigger_examples,
                "base_model_on_them": before_flags,
            },
            "eval_set": {
                **ev.get("dataset", {}),
                "showing": sum(any(f.category == cat for f in c.record.moderation.categories) for c in self.held_out),
            },
            "before": before,
            "after": after,
            "promotion": promotion,
            "served": served,
        }


def _figures(report: dict, category: str) -> dict[str, float | None]:
    per = (report.get("moderation") or {}).get("per_category", {}).get(category) or {}
    return {
        f"{category}.recall": per.get("recall"),
        f"{category}.precision": per.get("precision"),
        **report["headline"],
    }


def table(report: dict):
    """The before/after table for the terminal."""
    from rich.table import Table

    from evaluation.table import fmt

    t = Table(
        "metric",
        f"before ({report['base_version']})",
        f"after ({report['version']})",
        "change",
        title=f"feedback loop on {report['eval_set'].get('name')} ({report['eval_set'].get('videos')} clips, "
        f"{report['eval_set'].get('showing')} showing {report['category']})",
    )
    for name, b in report["before"].items():
        a = report["after"].get(name)
        change = f"{a - b:+.3f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) else "-"
        t.add_row(name, fmt(b), fmt(a), change)
    return t


def summary_lines(report: dict) -> list[str]:
    p, served = report["promotion"], report["served"]
    lines = [
        f"moderators: {report['moderation']['actions']} -> {report['moderation']['events']} feedback events; "
        f"the trigger (threshold {report['moderation']['trigger_threshold']}) queued {report['run_id']}",
        f"promotion of {report['version']}: {'promoted' if p['promoted'] else 'refused'} ({p['reason']})",
    ]
    if served:
        lines.append(f"the restarted worker's records: {served}")
    lines.append(f"report: {report.get('path')}")
    return lines
