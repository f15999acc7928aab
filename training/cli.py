"""`keye train ...`: fine-tuning runs on feedback, model versions, and the job worker.

Heavy imports (torch, the model, Celery) happen inside each command, like the rest of the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from service.settings import get_settings

train_app = typer.Typer(
    help="Fine-tuning on feedback: runs, model versions, promotion and rollback.", no_args_is_help=True
)
console = Console()


@contextmanager
def _session() -> Iterator:
    """A session on the migrated database; the engine is disposed on the way out."""
    from sqlmodel import Session

    from stores.db import migrated_engine

    with migrated_engine(get_settings()) as engine, Session(engine) as session:
        yield session


@train_app.command("run")
def run(
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of TrainConfig fields")] = None,
    queue: Annotated[bool, typer.Option(help="send the run to the Celery workers instead of running here")] = False,
) -> None:
    """Fine-tune the active model on the feedback no run has used yet; registers a candidate version."""
    from service.train_config import TrainConfig, TrainConfigError

    raw = json.loads(config.read_text()) if config else {}
    for key, value in (("steps", steps), ("lr", lr)):
        if value is not None:
            raw[key] = value
    if rank is not None:
        raw["lora"] = {**raw.get("lora", {}), "rank": rank}
    try:
        cfg = TrainConfig.from_dict(raw)
    except (TrainConfigError, TypeError) as e:
        raise typer.BadParameter(str(e)) from e
    s = get_settings()
    if queue:
        from training.jobs import submit

        queued, result = submit(s, cfg)
        console.print(f"queued {queued.run_id} (job {result.id}) against {queued.base_version}")
        return
    from stores.training_queue import queue_run
    from training.runner import execute_run, summary

    with _session() as session:
        queued = queue_run(session, s, cfg)
    done = execute_run(
        s, queued.run_id, log=lambda step, loss, lr_: console.print(f"step {step + 1}: loss {loss:.4f} lr {lr_:.2e}")
    )
    console.print_json(json.dumps(summary(done), default=str))
    if done.status != "succeeded":
        raise typer.Exit(1)


@train_app.command("demo")
def demo(
    force: Annotated[bool, typer.Option(help="retrain even when the model is there (the corpus is kept)")] = False,
    clips: Annotated[int | None, typer.Option(help="train clips (default: the spec's)")] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps (default: the spec's)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Build keye-demo, a small model of the architecture trained from scratch on the generated corpus,
    under KEYE_DATA_DIR/models/keye-demo (reused while its spec is unchanged); KEYE_MODEL=keye-demo serves it."""
    import logging

    from service.logs import setup_logging
    from training.demo import build_demo
    from training.demo_spec import DEMO

    setup_logging()
    if progress:  # the bar shows every step; the log keeps training.demo's line every checkpoint
        logging.getLogger("training.full").setLevel(logging.WARNING)
    changes = {k: v for k, v in (("train_clips", clips), ("steps", steps)) if v is not None}
    for key, value in changes.items():
        if value < 1:
            raise typer.BadParameter(f"{key} must be at least 1, got {value}")
    made = build_demo(get_settings(), DEMO.with_(**changes), progress=progress, force=force)
    if made.reused:
        console.print(f"keye-demo is at {made.path} (reused; trained in {made.info['train_seconds']:.0f} s)")
    else:
        console.print(
            f"keye-demo written to {made.path} in {made.seconds:.0f} s "
            f"(training {made.info['train_seconds']:.0f} s, loss {made.info['losses']['first']:.3f} -> "
            f"{made.info['losses']['last']:.3f})"
        )
    console.print("select it with KEYE_MODEL=keye-demo")


@train_app.command("list")
def list_all() -> None:
    """Model versions (newest first) and recent runs."""
    from training.registry import list_versions
    from training.runner import list_runs

    with _session() as session:
        versions = Table(
            "version", "status", "base", "eval loss (base -> this)", "eval (base -> this)", "promotion", "path"
        )
        for v in list_versions(session):
            m = v.metrics or {}
            loss = (
                f"{m['eval_loss_base']:.4f} -> {m['eval_loss']:.4f}"
                if m.get("eval_loss") is not None and m.get("eval_loss_base") is not None
                else ""
            )
            promotion = m.get("promotion") or {}
            gate = ("forced: " if promotion.get("forced") else "") + promotion.get("verdict", "") if promotion else ""
            versions.add_row(v.version, v.status, v.base_version or "", loss, _eval_line(m.get("eval")), gate, v.path)
        runs = Table("run", "status", "base", "output", "examples", "error")
        for r in list_runs(session):
            runs.add_row(
                r.run_id, r.status, r.base_version, r.output_version or "", str(r.examples), (r.error or "")[:80]
            )
    console.print(versions)
    console.print(runs)


def _eval_line(ev: dict | None) -> str:
    """The run's headline comparison: tag F1, moderation recall, summary ROUGE-L."""
    if not ev:
        return ""
    from evaluation.table import fmt

    keys = (("tags.micro_f1", "tag F1"), ("moderation.recall", "mod recall"), ("summary.rouge_l", "ROUGE-L"))
    return "; ".join(f"{label} {fmt(ev['base'].get(k))} -> {fmt(ev['candidate'].get(k))}" for k, label in keys)


def _registry_change(action) -> None:
    from training.errors import RegistryError

    try:
        with _session() as session:
            row = action(session)
            session.commit()
            console.print(f"active: {row.version} ({row.path})")
    except RegistryError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from e


@train_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="a candidate (or retired) model version")],
    force: Annotated[bool, typer.Option(help="promote even when the evaluation gate refuses (recorded)")] = False,
) -> None:
    """Make a version the active one (the previous one is retired) if it is no worse than the active
    version on any headline eval metric by more than KEYE_EVAL_TOLERANCE."""
    from training import registry

    s = get_settings()

    def change(session):
        registry.ensure_base(session, s)  # so the first promotion can be rolled back to the base
        row = registry.promote(session, version, force=force, tolerance=s.eval_tolerance)
        verdict = row.metrics["promotion"]
        console.print(
            ("[yellow]forced past the gate[/yellow]: " if verdict["forced"] else "gate: ") + verdict["reason"]
        )
        return row

    _registry_change(change)


@train_app.command("rollback")
def rollback() -> None:
    """Retire the active version and re-activate the one promoted before it."""
    from training import registry

    _registry_change(registry.rollback)


@train_app.command("worker")
def worker(loglevel: Annotated[str, typer.Option()] = "info") -> None:
    """A Celery worker for training jobs (one job at a time: a run owns the accelerator)."""
    from stores.training_queue import QUEUE
    from training.jobs import app

    app.worker_main(["worker", "-Q", QUEUE, "--pool", "solo", "--concurrency", "1", "--loglevel", loglevel])
