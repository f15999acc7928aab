"""Runs, the model registry and the Celery job: a run's row from queued to succeeded or failed, the
exported candidate and its metrics against the base, promotion and rollback, and the `train` task
executed end to end by a real Celery worker through the stack's Redis (with PostgreSQL)."""

from __future__ import annotations

import json
import uuid

import pytest
from kombu.exceptions import OperationalError
from sqlmodel import Session, select

import keye_model
from service.train_config import LoraConfig, TrainConfig, TrainConfigError
from stores.db import FeedbackRow, ModelVersion, TrainingRun
from stores.training_queue import queue_run
from tests.support.training import RECORD, seed_feedback, store_feedback, store_video
from training import registry
from training.errors import RegistryError
from training.runner import RunStateError, execute_run

TINY = TrainConfig(steps=6, lr=3e-3, warmup_steps=1, eval_fraction=0.34, cache_inputs=True, lora=LoraConfig(rank=4))
# What Celery raises when its Redis does not answer: the result backend gives up reconnecting (a
# RuntimeError; it subscribes before the send), or the broker refuses the message (kombu's OperationalError).
BROKER_DOWN = (RuntimeError, OperationalError)


def _rows(engine, model):
    with Session(engine) as s:
        return list(s.exec(select(model)))


def test_a_run_records_its_row_and_a_candidate(engine, settings, sample_clips):
    with Session(engine) as s:
        ids = seed_feedback(s, sample_clips)
        aid = store_video(s, "missing", "file:///no/such/clip.mp4", RECORD)
        gone = store_feedback(s, "missing", "tag_correction", {"analysis_id": aid, "add": ["x"]})
        engagement = store_feedback(s, "clip0", "engagement", {"metric": "likes", "value": 4}, 5)
        run = queue_run(s, settings, TINY)
        assert run.status == "queued" and run.base_version == "keye-tiny" and run.config["steps"] == 6
    done = execute_run(settings, run.run_id)
    assert done.status == "succeeded", done.error
    assert done.examples == 9 and done.error is None and done.finished_at is not None
    assert set(done.metrics["skipped"]) == {gone, engagement}
    assert "cannot be read" in done.metrics["skipped"][gone]
    versions = {v.version: v for v in _rows(engine, ModelVersion)}
    assert versions["keye-tiny"].status == "active"  # the configured base, registered on first use
    cand = versions[done.output_version]
    assert cand.status == "candidate" and cand.base_version == "keye-tiny"
    m = cand.metrics
    assert m["run_id"] == run.run_id and m["eval_examples"] == 3 and m["train_examples"] == 6
    assert m["eval_loss"] < m["eval_loss_base"]  # better than the base on the same held-out videos
    assert m["eval_improvement"] == pytest.approx(m["eval_loss_base"] - m["eval_loss"])
    # `keye eval` of base and candidate on the same labels (the reviews), each report kept with its version
    from evaluation.store import latest

    assert m["eval"]["dataset"]["name"] == "reviews" and m["eval"]["dataset"]["videos"] >= 2
    assert set(m["eval"]["base"]) == set(m["eval"]["candidate"]) and "moderation.recall" in m["eval"]["base"]
    with Session(engine) as s:
        reports = {v: latest(s, v) for v in ("keye-tiny", done.output_version)}
    assert all(r is not None and r.dataset_id == m["eval"]["dataset"]["id"] for r in reports.values())
    assert reports["keye-tiny"].report["model_version"] == "keye-tiny"
    path = settings.data_dir / "models" / done.output_version
    assert cand.path == str(path) and (path / "model.safetensors").is_file()
    assert json.loads((path / "config.json").read_text())["num_hidden_layers"] == 2
    keye_model.load(path)  # the released layout, loadable as-is
    feedback = _rows(engine, FeedbackRow)
    assert {f.used_in_run for f in feedback} == {run.run_id} and len(feedback) == len(ids) + 2
    with pytest.raises(RunStateError, match="succeeded, not queued"):
        execute_run(settings, run.run_id)


def test_a_run_measures_base_and_candidate_on_the_configured_corpus(engine, settings, sample_clips, tmp_path):
    """KEYE_EVAL_CORPUS: held-out generated clips (its test split, at most KEYE_EVAL_LIMIT) instead of the reviews."""
    from corpus.make import make
    from evaluation.store import reports_of

    make(tmp_path / "corpus", seed=1054, clips=3, split="test")
    s = settings.model_copy(update={"eval_corpus": tmp_path / "corpus", "eval_limit": 2})
    with Session(engine) as session:
        seed_feedback(session, sample_clips)
        run = queue_run(session, s, TINY)
    done = execute_run(s, run.run_id)
    assert done.status == "succeeded", done.error
    cand = {v.version: v for v in _rows(engine, ModelVersion)}[done.output_version]
    ev = cand.metrics["eval"]
    assert ev["dataset"]["name"] == "corpus:corpus/test" and ev["dataset"]["videos"] == 2
    with Session(engine) as session:
        for version in ("keye-tiny", done.output_version):
            [row] = reports_of(session, version)
            assert row.dataset_id == ev["dataset"]["id"] and row.report["cost"]["analyzed"] == 2


def test_a_failing_run_is_recorded_and_leaves_feedback_unused(engine, settings, sample_clips):
    with Session(engine) as s:
        store_video(s, "v", sample_clips[1], RECORD)
        store_feedback(s, "v", "engagement", {"metric": "views", "value": 10})
        run = queue_run(s, settings, TINY)
    done = execute_run(settings, run.run_id)
    assert done.status == "failed" and done.finished_at is not None
    assert done.error.startswith("NotEnoughExamples: 0 usable example(s)")
    assert [f.used_in_run for f in _rows(engine, FeedbackRow)] == [None]
    assert not (settings.data_dir / "models").exists() or not any((settings.data_dir / "models").iterdir())
    assert [v.version for v in _rows(engine, ModelVersion)] == ["keye-tiny"]

    broken = settings.model_copy(update={"model": str(settings.data_dir / "no-checkpoint")})
    with Session(engine) as s:
        seed_feedback(s, sample_clips[:1])
        s.delete(s.get(ModelVersion, "keye-tiny"))
        s.commit()
        run = queue_run(s, broken, TINY)
    done = execute_run(broken, run.run_id)
    assert done.status == "failed" and "CheckpointError" in done.error and "no-checkpoint" in done.error


def test_promote_and_rollback(engine, settings, tmp_path):
    from stores.db import serving_model

    with Session(engine) as s:
        base = registry.ensure_base(s, settings)
        s.commit()
        assert base.status == "active"
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            registry.register_candidate(s, name, tmp_path / name, "keye-tiny", {"eval_loss": 1.0})
        s.commit()
        with pytest.raises(RegistryError, match="already exists"):
            registry.register_candidate(s, "a", tmp_path / "a", "keye-tiny", {})
        s.rollback()
        with pytest.raises(RegistryError, match="first active version"):
            registry.rollback(s)
        with pytest.raises(registry.PromotionRefused, match="no evaluation reports"):
            registry.promote(s, "a")  # the gate: nothing measured, nothing promoted (tests/evaluation: reports)
        registry.promote(s, "a", force=True)
        s.commit()
        assert {v.version: v.status for v in registry.list_versions(s)} == {
            "keye-tiny": "retired",
            "a": "active",
            "b": "candidate",
        }
        registry.promote(s, "b", force=True)
        s.commit()
        assert serving_model(s, settings) == ("b", str(tmp_path / "b"))
        with pytest.raises(RegistryError, match="already active"):
            registry.promote(s, "b")
        with pytest.raises(RegistryError, match="unknown model version 'zzz'"):
            registry.promote(s, "zzz")
        assert registry.rollback(s).version == "a"
        s.commit()
        assert registry.rollback(s).version == "keye-tiny"  # never back to b, which was rolled back
        s.commit()
        states = {v.version: v.status for v in registry.list_versions(s)}
        assert states == {"keye-tiny": "active", "a": "retired", "b": "retired"}
        assert serving_model(s, settings) == ("keye-tiny", "keye-tiny")
        registry.promote(s, "b", force=True)  # an explicit promotion brings a rolled-back version back
        s.commit()
        assert registry.rollback(s).version == "keye-tiny"
        s.commit()
        assert sum(v.status == "active" for v in registry.list_versions(s)) == 1
        (tmp_path / "a").rmdir()
        with pytest.raises(RegistryError, match="no checkpoint"):
            registry.promote(s, "a")


@pytest.mark.redis
@pytest.mark.postgres
def test_celery_worker_runs_the_train_task_through_redis(
    pg_database, redis_url, tmp_path, monkeypatch, tight_config_path, sample_clips
):
    from celery.contrib.testing.worker import start_worker

    from service.settings import Settings
    from stores.db import engine_from, migrate
    from training.jobs import make_app, submit

    env = {
        "KEYE_DATABASE_URL": pg_database,
        "KEYE_DATA_DIR": str(tmp_path / "data"),
        "KEYE_REDIS_URL": redis_url,
        "KEYE_ANALYSIS_CONFIG": str(tight_config_path),
        "KEYE_MODEL": "keye-tiny",
        "KEYE_FILE_ROOTS": json.dumps([str(sample_clips[0].parent)]),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    engine = engine_from(settings)
    migrate(engine)
    with Session(engine) as s:
        seed_feedback(s, sample_clips)
    app = make_app(settings, queue=f"keye.training.test-{uuid.uuid4().hex[:8]}")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        run, result = submit(settings, TINY, app)
        out = result.get(timeout=300)
    assert out["status"] == "succeeded" and out["run_id"] == run.run_id and out["examples"] == 9
    with Session(engine) as s:
        row = s.get(TrainingRun, run.run_id)
        assert row.status == "succeeded" and row.output_version == out["output_version"]
        assert s.get(ModelVersion, row.output_version).status == "candidate"
        assert {f.used_in_run for f in s.exec(select(FeedbackRow))} == {run.run_id}
    engine.dispose()


@pytest.mark.redis
def test_enough_new_feedback_triggers_one_job(engine, settings, redis_url, sample_clips):
    import redis

    from stores.training_queue import TASK
    from training.jobs import make_app, maybe_trigger

    settings = settings.model_copy(update={"redis_url": redis_url})
    queue = f"keye.training.test-{uuid.uuid4().hex[:8]}"
    app = make_app(settings, queue=queue)
    client = redis.Redis.from_url(redis_url)
    try:
        with Session(engine) as s:
            store_video(s, "v", sample_clips[1], RECORD)
            for k in range(3):
                store_feedback(s, "v", "engagement", {"metric": "views", "value": k}, k)  # not supervised: no count
            store_feedback(s, "v", "summary_edit", {"text": "One."}, 5)
        assert maybe_trigger(settings, 2, TINY, app) is None  # 1 supervised event < 2
        with Session(engine) as s:
            store_feedback(s, "v", "tag_correction", {"add": ["bike"]}, 6)
        run, result = maybe_trigger(settings, 2, TINY, app)
        assert run.status == "queued" and TrainConfig.from_dict(run.config) == TINY
        assert maybe_trigger(settings, 2, TINY, app) is None  # a run is pending: no second job
        messages = [json.loads(m) for m in client.lrange(queue, 0, -1)]
        assert [(m["headers"]["task"], m["headers"]["id"]) for m in messages] == [(TASK, result.id)]
        assert [r.run_id for r in _rows(engine, TrainingRun)] == [run.run_id]
    finally:
        client.delete(queue)


def test_a_job_the_broker_cannot_take_fails_its_run_instead_of_blocking_triggers(engine, settings, sample_clips):
    from training.jobs import make_app, maybe_trigger

    settings = settings.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})  # nothing listens there
    app = make_app(settings)
    with Session(engine) as s:
        store_video(s, "v", sample_clips[1], RECORD)
        store_feedback(s, "v", "tag_correction", {"add": ["bike"]}, 1)
    with pytest.raises(BROKER_DOWN):
        maybe_trigger(settings, 1, TINY, app)
    (run,) = _rows(engine, TrainingRun)
    assert run.status == "failed" and "could not send the job to the broker" in run.error
    # The failed run is not pending: the next trigger tries again (and fails again, recorded).
    with pytest.raises(BROKER_DOWN):
        maybe_trigger(settings, 1, TINY, app)
    assert [r.status for r in _rows(engine, TrainingRun)] == ["failed", "failed"]


def test_a_run_queued_without_a_config_takes_keye_train_config(engine, settings, tmp_path):
    """What a triggered run trains with (the streams app passes no config): KEYE_TRAIN_CONFIG, else the defaults."""
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"steps": 7, "lr": 5e-4, "full": True}))
    with Session(engine) as s:
        plain = queue_run(s, settings).config
        configured = queue_run(s, settings.model_copy(update={"train_config": path})).config
    assert TrainConfig.from_dict(plain) == TrainConfig()
    assert TrainConfig.from_dict(configured) == TrainConfig(steps=7, lr=5e-4, full=True)
    path.write_text(json.dumps({"stepz": 7}))
    with Session(engine) as s, pytest.raises(TrainConfigError, match="unknown training option"):
        queue_run(s, settings.model_copy(update={"train_config": path}))
    with Session(engine) as s, pytest.raises(TrainConfigError, match="KEYE_TRAIN_CONFIG"):
        queue_run(s, settings.model_copy(update={"train_config": tmp_path / "missing.json"}))


def test_a_run_rehearses_a_labelled_corpus_beside_the_feedback(engine, settings, sample_clips, tmp_path):
    """TrainConfig.replay_corpus: every task of those clips is taught beside the feedback, never instead of it."""
    from corpus.make import make

    make(tmp_path / "replay", seed=3, clips=2, split="train")
    cfg = TrainConfig.from_dict({**TINY.to_dict(), "replay_corpus": str(tmp_path / "replay"), "replay_clips": 1})
    with Session(engine) as s:
        seed_feedback(s, sample_clips[:1])
        run = queue_run(s, settings, cfg)
    done = execute_run(settings, run.run_id)
    assert done.status == "succeeded", done.error
    m = done.metrics
    assert m["replayed"] >= 3  # the one clip's tags, summary and moderation (products when it has any)
    assert m["train_examples"] + m["eval_examples"] == done.examples + m["replayed"]

    with Session(engine) as s:  # no usable feedback: nothing to rehearse beside, the run fails as before
        store_video(s, "v", sample_clips[1], RECORD)
        store_feedback(s, "v", "engagement", {"metric": "views", "value": 10})
        run = queue_run(s, settings, cfg)
    done = execute_run(settings, run.run_id)
    assert done.status == "failed" and done.error.startswith("NotEnoughExamples: 0 usable example(s)")
