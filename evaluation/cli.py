"""`keye eval ...`: measure a model on a labelled corpus, on the moderators' reviews, or on a
KC-MMBench TSV. Heavy imports (torch, the model) happen inside each command."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.settings import get_settings

eval_app = typer.Typer(
    help="Measure how right the analyzer is: labelled corpora, reviews, KC-MMBench.", no_args_is_help=True
)
console = Console()

Model = Annotated[
    str | None,
    typer.Option(
        help="a registered version, preset or checkpoint folder (default: the active version, as workers serve it)"
    ),
]
Out = Annotated[Path, typer.Option(help="the JSON report (the sweep PNG goes beside it)")]
Limit = Annotated[int | None, typer.Option(help="evaluate the first N videos only")]
Store = Annotated[bool, typer.Option(help="keep the report with the model version in SQL")]
Records = Annotated[Path | None, typer.Option(help="also write the analysis records (JSON lines) to re-score later")]


def _progress(done: int, total: int) -> None:
    console.print(f"analyzed {done}/{total}", highlight=False)


def _finish(report: dict, out: Path, store: bool) -> None:
    from evaluation.plot import plot_sweep
    from evaluation.table import tables

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    png = plot_sweep(
        report["moderation"]["sweep"],
        out.with_name(out.stem + "-sweep.png"),
        title=f"{report['model_version']}: moderation precision vs recall",
    )
    for t in tables(report):
        console.print(t)
    if store:
        from sqlmodel import Session

        from evaluation.store import save_report
        from stores.db import migrated_engine

        with migrated_engine(get_settings()) as engine, Session(engine) as session:
            save_report(session, report["model_version"], report)
            session.commit()
    console.print(f"report: {out}; sweep plot: {png}" + ("; stored in SQL" if store else ""))


def _evaluate(labelled, model: str | None, batch_size: int, records: Path | None) -> dict:
    from analysis.config import load_config
    from evaluation.harness import run_analyzer
    from evaluation.models import analyzer_for
    from evaluation.report import build_report

    if not labelled.videos:
        raise typer.BadParameter("the labelled set is empty")
    s = get_settings()
    analyzer = analyzer_for(s, model)
    console.print(f"evaluating {analyzer.model_version} on {labelled.name} ({len(labelled.videos)} videos)")
    result = run_analyzer(analyzer, labelled, s, batch_size, progress=_progress)
    if records is not None:
        records.write_text("".join(r.model_dump_json() + "\n" for r in result.records.values()))
    return build_report(
        labelled,
        result.records,
        config=load_config(s.analysis_config),
        text_embed=analyzer.embed_text,
        run=result,
        model_version=analyzer.model_version,
        prompt_version=analyzer.prompt_version,
    )


@eval_app.command("run")
def run(
    corpus: Annotated[Path, typer.Argument(help="a `keye corpus make` folder", exists=True, file_okay=False)],
    model: Model = None,
    out: Out = Path("eval-report.json"),
    limit: Limit = None,
    split: Annotated[str | None, typer.Option(help="only this split (train, val, test)")] = None,
    batch_size: Annotated[int, typer.Option(help="videos per analyzer batch, as a worker's")] = 4,
    store: Store = True,
    records: Records = None,
) -> None:
    """Analyze a labelled corpus as the workers do and report every task's accuracy."""
    from evaluation.labelled import from_corpus

    _finish(_evaluate(from_corpus(corpus, split, limit), model, batch_size, records), out, store)


@eval_app.command("score")
def score(
    corpus: Annotated[Path, typer.Argument(help="the corpus folder the records are of", exists=True, file_okay=False)],
    records: Annotated[
        Path, typer.Argument(help="analysis records (JSON lines, e.g. from run --records)", exists=True, dir_okay=False)
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="the model whose text embedding turns captions into queries (no retrieval scores without it)"
        ),
    ] = None,
    out: Out = Path("eval-report.json"),
    limit: Limit = None,
    split: Annotated[str | None, typer.Option()] = None,
    store: Store = False,
) -> None:
    """Score stored analysis records against a corpus without analyzing again."""
    from analysis.config import load_config
    from evaluation.labelled import from_corpus
    from evaluation.report import build_report
    from service.schemas import AnalysisRecord

    rows = [AnalysisRecord.model_validate_json(line) for line in records.read_text().splitlines() if line.strip()]
    if not rows:
        raise typer.BadParameter(f"{records} holds no records")
    s = get_settings()
    embed = None
    if model is not None:
        from analysis import embed_text
        from evaluation.models import load_model

        net, processor, _ = load_model(s, model)
        embed = partial(embed_text, net, processor)
    report = build_report(
        from_corpus(corpus, split, limit),
        {r.video_id: r for r in rows},
        config=load_config(s.analysis_config),
        text_embed=embed,
        model_version=rows[0].model_version,
        prompt_version=rows[0].prompt_version,
    )
    _finish(report, out, store)


@eval_app.command("reviews")
def reviews(
    model: Model = None,
    out: Out = Path("eval-reviews.json"),
    limit: Limit = None,
    batch_size: Annotated[int, typer.Option()] = 4,
    store: Store = True,
    records: Records = None,
) -> None:
    """Measure a model on your own traffic: the moderators' decisions and tag corrections as labels."""
    from sqlmodel import Session

    from analysis.config import load_config
    from evaluation.reviews import from_reviews
    from stores.db import migrated_engine

    s = get_settings()
    with migrated_engine(s) as engine, Session(engine) as session:
        labelled = from_reviews(session, load_config(s.analysis_config), limit)
    _finish(_evaluate(labelled, model, batch_size, records), out, store)


@eval_app.command("kcmmbench")
def kcmmbench(
    tsv: Annotated[Path, typer.Argument(help="a file in VLMEvalKit's TSV layout", exists=True, dir_okay=False)],
    model: Model = None,
    out: Annotated[Path | None, typer.Option(help="the scores as JSON")] = None,
    max_new_tokens: Annotated[int, typer.Option()] = 64,
) -> None:
    """Score a KC-MMBench TSV: its `prediction` column, else the model's answers (written beside it)."""
    from rich.table import Table

    from evaluation import kcmmbench as K

    answer = None
    if "prediction" not in (tsv.open(encoding="utf-8").readline().rstrip("\n").split("\t")):
        from evaluation.models import load_model

        net, processor, version = load_model(get_settings(), model)
        console.print(f"answering with {version}")
        answer = K.ModelAnswerer(net, processor, max_new_tokens=max_new_tokens)
    scores, predictions = K.run(tsv, answer, progress=_progress)
    if answer is not None:
        written = tsv.with_name(tsv.stem + "-predictions.tsv")
        K.write_predictions(tsv, written, predictions)
        console.print(f"predictions: {written}")
    table = Table("category", "kind", "items", "accuracy (%)", "no answer found", title=str(tsv))
    for name, row in scores["per_category"].items():
        table.add_row(name, row["kind"], str(row["items"]), f"{100 * row['accuracy']:.2f}", str(row["unextracted"]))
    o = scores["overall"]
    table.add_row("overall", "", str(o["items"]), f"{100 * (o['accuracy'] or 0):.2f}", str(o["unextracted"]))
    console.print(table)
    if out is not None:
        out.write_text(json.dumps(scores, indent=1))
