"""`keye train demo-loop`: the feedback loop of demo/loop.py, registered on `keye train` here at the top,
since the training package must not import the demo that drives it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.stack import devstack
from service.settings import get_settings

console = Console()


def demo_loop(
    category: Annotated[str, typer.Option(help="the moderation category withheld, then taught")] = "weapons",
    moderated: Annotated[
        tuple[int, int], typer.Option(help="moderated clips showing the category, and not showing it")
    ] = (24, 24),
    evaluated: Annotated[
        tuple[int, int],
        typer.Option(help="evaluation clips (KEYE_EVAL_CORPUS) showing the category, and not showing it"),
    ] = (20, 180),
    rehearsal: Annotated[
        int, typer.Option(help="clips of the variant's train plan (without the category) the run rehearses; 0: none")
    ] = 24,
    config: Annotated[
        Path | None, typer.Option(help="JSON file of TrainConfig fields over the loop's (full training, 100 steps)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="the report (default: the run folder's report.json)")] = None,
    keep_database: Annotated[bool, typer.Option(help="keep the loop's PostgreSQL database")] = False,
) -> None:
    """The feedback loop end to end on `keye stack up`'s Kafka and PostgreSQL (and a private redis-server):
    keye-demo without CATEGORY serves held-out clips, moderators decide through the API, the trigger queues a
    run, `keye train worker` fine-tunes, the gate promotes, a restarted worker serves; prints before/after."""
    devstack()  # the loop starts its own redis-server and PostgreSQL database with it
    from demo.loop import TRAIN_CONFIG, LoopError, LoopSizes, run_loop, summary_lines, table
    from service.logs import setup_logging

    setup_logging()
    train_config = {**TRAIN_CONFIG, **(json.loads(config.read_text()) if config else {})}
    sizes = LoopSizes(
        category=category,
        moderated_with=moderated[0],
        moderated_without=moderated[1],
        eval_with=evaluated[0],
        eval_without=evaluated[1],
        rehearsal=rehearsal,
        train_config=train_config,
    )
    try:
        report = run_loop(get_settings(), sizes, out=out, keep=keep_database)
    except LoopError as e:
        console.print(f"[red]demo-loop: {e}[/red]")
        raise typer.Exit(1) from None
    console.print(table(report))
    for line in summary_lines(report):
        console.print(line)
    if not report["promotion"]["promoted"]:
        raise typer.Exit(1)
