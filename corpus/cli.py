"""`keye corpus make`: generate a labelled short-video corpus. The generator is imported inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

corpus_app = typer.Typer(help="Generated, labelled short-video corpora for `keye eval`.", no_args_is_help=True)
console = Console()


@corpus_app.command("make")
def make_cmd(
    out: Annotated[Path, typer.Argument(help="new folder for clips/, labels.jsonl and corpus.json")],
    seed: Annotated[int, typer.Option(help="corpus seed: train 0..999, test 1000..1999, val 2000..2999")],
    clips: Annotated[int, typer.Option(help="number of clips")] = 200,
    split: Annotated[str, typer.Option(help="train, val or test")] = "test",
    violating_share: Annotated[
        float | None,
        typer.Option(
            help="share of clips with a moderation cue (default: the platform-like 0.17; raise it for training)"
        ),
    ] = None,
) -> None:
    """Generate N clips of one split from a seed; the same seed always gives the same corpus."""
    from corpus.make import CorpusError, counts, make
    from service.logs import setup_logging

    setup_logging()
    try:
        labels = make(
            out, seed, clips, split, **({} if violating_share is None else {"violating_share": violating_share})
        )
    except CorpusError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    c = counts(labels)
    table = Table(title=f"{out}: {split} seed {seed}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("clips", "clean", "violating", "novel", "duplicates", "vp9", "seconds"):
        table.add_row(key, str(c[key]))
    table.add_row("tag concepts", str(len(c["tags"])))
    table.add_row("category x severity", str(len(c["moderation"])))
    console.print(table)
