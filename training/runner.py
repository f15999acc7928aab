"""A fine-tuning run from queue to candidate: the TrainingRun row's life and everything it leaves behind.

    run = queue_run(session, settings, TrainConfig(steps=200))   # status queued (stores/training_queue.py)
    run = execute_run(settings, run.run_id)                       # running -> succeeded | failed

A run claims itself atomically (queued -> running), so a redelivered job never trains twice. Its
configuration is the one it was queued with (a triggered run: KEYE_TRAIN_CONFIG's). It trains on the
feedback no run has used yet (plus the rehearsal clips of TrainConfig.replay_corpus, if any), starting
from the active model version (KEYE_MODEL when none is registered), measures the eval loss of base
and adapted model on the same held-out videos and runs `keye eval` on both with the same labelled set (KEYE_EVAL_CORPUS, else the
moderators' reviews; each version keeps its report in SQL for the promotion gate), exports the merged model to KEYE_DATA_DIR/models/<version> in the released layout, and in
one transaction registers the candidate, marks every event it considered (used or skipped, with
the skip reasons in the run's metrics) and records the run as succeeded. Any failure records the
run as failed with its error, removes a half-written export and leaves the feedback unused.
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from evaluation import store
from service.schemas import utcnow
from service.settings import MODEL_ANALYSIS_CONFIG, Settings
from service.train_config import TrainConfig, TrainingError
from stores.db import FeedbackRow, TrainingRun, migrated_engine, table_of
from training import registry

# Files of a checkpoint folder besides the weights that the processor reads (copied to exports).
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "chat_template.json",
)


class RunStateError(TrainingError):
    """The run cannot be executed in its current state (unknown, or already taken)."""


def list_runs(session: Session, limit: int = 50) -> list[TrainingRun]:
    return list(session.exec(select(TrainingRun).order_by(sa.desc(col(TrainingRun.created_at))).limit(limit)))


def _claim(session: Session, run_id: str) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise RunStateError(f"no training run {run_id!r}")
    claimed = session.execute(
        sa.update(table_of(TrainingRun))
        .where(col(TrainingRun.run_id) == run_id, col(TrainingRun.status) == "queued")
        .values(status="running")
    )
    session.commit()
    assert isinstance(claimed, sa.CursorResult)  # a Core UPDATE's result, which counts its rows
    if claimed.rowcount != 1:
        raise RunStateError(f"training run {run_id} is {run.status}, not queued")
    session.refresh(run)
    return run


def execute_run(settings: Settings, run_id: str, log=None) -> TrainingRun:
    """Run a queued run to its end; the returned row says succeeded or failed (and why)."""
    with migrated_engine(settings) as engine:
        with Session(engine) as session:
            run = _claim(session, run_id)
            export = models_dir(settings) / version_name(run_id)
            try:
                _train_and_register(session, settings, run, export, log)
            except Exception as e:  # noqa: BLE001 - every failure is recorded on the run
                session.rollback()
                shutil.rmtree(export, ignore_errors=True)
                stored = session.get(TrainingRun, run_id)
                assert stored is not None, "the run's row was claimed above, so it exists"
                run = stored
                run.status, run.finished_at = "failed", utcnow()
                run.error = f"{type(e).__name__}: {e}"[:4000]
                run.metrics = {**(run.metrics or {}), "traceback": traceback.format_exc(limit=8)[-4000:]}
                session.add(run)
                session.commit()
            session.refresh(run)
            session.expunge(run)
            return run


def version_name(run_id: str) -> str:
    return f"ft-{run_id.removeprefix('run-')}"


def models_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "models"


def _base_path(session: Session, run: TrainingRun, settings: Settings) -> str:
    from stores.db import ModelVersion

    base = session.get(ModelVersion, run.base_version)
    return base.path if base is not None else str(settings.model)


def _train_and_register(session: Session, settings: Settings, run: TrainingRun, export: Path, log) -> None:
    import keye_model
    from analysis.config import load_config
    from keye_model.processor import KeyeProcessor
    from training.dataset import build_dataset, unused_feedback
    from training.lora import merge_lora
    from training.sft import train

    cfg = TrainConfig.from_dict(run.config)
    base_path = _base_path(session, run, settings)
    folder = Path(base_path)
    processor = KeyeProcessor.from_pretrained(folder) if folder.is_dir() else KeyeProcessor()
    analysis_cfg = load_config(settings.analysis_config)
    rows = unused_feedback(session, cfg.max_events)
    ds = build_dataset(session, rows, processor, analysis_cfg, settings)
    model = keye_model.load(base_path, dtype=settings.dtype, device=settings.device).eval()
    measure = _Measure(session, settings, analysis_cfg, processor)
    base_report = measure(model, run.base_version, skip_if_known=True)  # before the adapters change the model
    replayed = replay_examples(processor, analysis_cfg, cfg) if len(ds.examples) >= cfg.min_examples else []
    result = train(model, ds.examples + replayed, cfg, ds.pairs, log=log)

    version = export.name
    run.output_version = version
    merge_lora(model)
    model.save_pretrained(export)
    if folder.is_dir():
        for name in (*PROCESSOR_FILES, MODEL_ANALYSIS_CONFIG):  # the prompts and budgets it was trained for
            if (folder / name).is_file():
                shutil.copy2(folder / name, export / name)

    metrics = result.metrics()
    improvement = None
    if result.eval_loss is not None and result.eval_loss_base is not None:
        improvement = result.eval_loss_base - result.eval_loss
    version_metrics: dict[str, Any] = {
        "run_id": run.run_id,
        "eval_loss": result.eval_loss,
        "eval_loss_base": result.eval_loss_base,
        "eval_improvement": improvement,
        "eval_examples": result.eval_examples,
        "train_examples": result.train_examples,
    }
    candidate_report = measure(model, version)
    if candidate_report is not None:
        assert base_report is not None, "measured on the same labelled set as the candidate"
        version_metrics["eval"] = {
            "dataset": measure.labelled.describe(),
            "base": base_report["headline"],
            "candidate": candidate_report["headline"],
        }
    registry.register_candidate(session, version, export, run.base_version, version_metrics)
    for name, report in ((run.base_version, base_report), (version, candidate_report)):
        if report is not None and report is not measure.known:
            store.save_report(session, name, report)
    considered = list(ds.considered)
    for i in range(0, len(considered), 500):
        session.execute(
            sa.update(table_of(FeedbackRow))
            .where(col(FeedbackRow.event_id).in_(considered[i : i + 500]))
            .values(used_in_run=run.run_id)
        )
    run.status, run.finished_at, run.error = "succeeded", utcnow(), None
    run.examples = len(ds.examples)
    run.metrics = {
        **metrics,
        "events": len(considered),
        "pairs": len(ds.pairs),
        "replayed": len(replayed),
        "skipped": ds.skip_reasons(),
    }
    session.add(run)
    session.commit()


def replay_examples(processor, analysis_cfg, cfg: TrainConfig) -> list:
    """The rehearsal examples of TrainConfig.replay_corpus (none without one); a missing folder fails the run."""
    if cfg.replay_corpus is None:
        return []
    from corpus.labels import load_labels
    from training.corpus_examples import corpus_examples

    clips = load_labels(cfg.replay_corpus)[: cfg.replay_clips]
    return corpus_examples(processor, analysis_cfg, cfg.replay_corpus, clips=clips).examples


class _Measure:
    """`keye eval` of the run's models on one held-out labelled set: KEYE_EVAL_CORPUS (its test split
    when it has one), else the moderators' reviews; at most KEYE_EVAL_LIMIT videos. No set, no report."""

    def __init__(self, session: Session, settings: Settings, cfg, processor) -> None:
        from evaluation.labelled import from_corpus
        from evaluation.reviews import from_reviews

        self.session, self.settings, self.cfg, self.processor = session, settings, cfg, processor
        limit = settings.eval_limit
        if settings.eval_corpus is not None:
            labelled = from_corpus(settings.eval_corpus, "test", limit)
            self.labelled = labelled if labelled.videos else from_corpus(settings.eval_corpus, None, limit)
        else:
            self.labelled = from_reviews(session, cfg, limit)
        self.known: dict | None = None  # a stored base report on the same labels, reused instead of re-measured

    def __call__(self, model, version: str, skip_if_known: bool = False) -> dict | None:
        from analysis import VideoAnalyzer
        from evaluation.harness import evaluate

        if not self.labelled.videos:
            return None
        if skip_if_known:
            row = store.latest(self.session, version, self.labelled.dataset_id)
            if row is not None:
                self.known = row.report
                return row.report
        analyzer = VideoAnalyzer(model, self.processor, self.cfg, model_version=version)
        return evaluate(analyzer, self.labelled, self.settings, config=self.cfg)


def summary(run: TrainingRun) -> dict[str, Any]:
    """What a job result or the CLI shows of a run."""
    return {
        "run_id": run.run_id,
        "status": run.status,
        "base_version": run.base_version,
        "output_version": run.output_version,
        "examples": run.examples,
        "error": run.error,
        "eval_loss_base": (run.metrics or {}).get("eval_loss_base"),
        "eval_loss": (run.metrics or {}).get("eval_loss"),
    }
