"""`keye train demo-loop` at tiny sizes, on the real stack: the mechanics of the feedback loop (the
accuracy figures of so small a model mean nothing; the full-size command measures them).

The moderators' API actions become feedback events that the streams app stores, its trigger queues
the one training run, `keye train worker` executes it, the candidate passes the gate and is promoted,
the restarted worker's records carry the new version, and the report holds before/after figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from demo.loop import Actions, LoopError, LoopSizes, moderator_actions, run_loop, summary_lines, table
from service.settings import Settings
from stores.db import Analysis, FeedbackRow, ModelVersion, Review, TrainingRun
from training.demo_spec import ANALYSIS_CONFIG, DEMO

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "torch_dtype": "float32",
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1},
}


def short_answers(folder: Path) -> Path:
    """The demo's analysis configuration with short answers (an untrained model writes up to the limits)."""
    from analysis.config import parse_config
    from analysis.schemas import max_output_tokens

    raw = json.loads(ANALYSIS_CONFIG.read_text())
    raw["version"] = "demo-loop-test"
    raw["video"].update(max_frames=4, frames_per_pass=4, max_pixels=12544)
    for task, limits in {
        "tags": {"max_items": 2, "text_chars": 8},
        "summary": {"title_chars": 12, "short_chars": 16, "long_chars": 20},
        "moderation": {"max_items": 1, "text_chars": 8, "think_chars": 16},
    }.items():
        raw["tasks"][task]["limits"].update(limits)
    cfg = parse_config(raw)
    for task in raw["tasks"]:
        raw["tasks"][task]["max_new_tokens"] = max_output_tokens(cfg, task)
    path = folder / "short.json"
    path.write_text(json.dumps(raw))
    return path


def test_moderator_actions_follow_the_truth(tmp_path: Path) -> None:
    assert moderator_actions([], {}).decision == {"decision": "clear", "note": "audited: nothing applies"}
    missed = moderator_actions([], {"weapons": 3})
    assert missed.decision is None and missed.missed == [("weapons", 3)]
    wrong = moderator_actions(["violence"], {"weapons": 2})
    assert wrong.decision["decision"] == "clear" and wrong.missed == [("weapons", 2)]
    assert moderator_actions(["weapons"], {"weapons": 2}) == Actions({"decision": "confirm"}, [])
    mixed = moderator_actions(["violence", "weapons"], {"weapons": 3})
    assert mixed.decision == {"decision": "confirm", "category": "weapons"} and mixed.missed == []
    with pytest.raises(LoopError, match="draws no 'sexual' clips"):  # no clip could ever show it
        run_loop(Settings(data_dir=tmp_path), LoopSizes(category="sexual"))
    with pytest.raises(LoopError, match=r"PostgreSQL at .*:1/postgres does not answer .*keye stack up"):
        run_loop(Settings(data_dir=tmp_path), postgres_url="postgresql://postgres@127.0.0.1:1/postgres")
    assert not (tmp_path / "demo-loop").exists()  # refused before anything was made


def test_the_loop_from_moderators_decisions_to_a_promoted_served_version(
    kafka_bootstrap: str, postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    # redis_url: the stack's Redis answering means redis-server is installed (the loop starts its own)
    spec = DEMO.with_(
        shape=SHAPE, analysis_config=short_answers(tmp_path), train_clips=3, steps=1, batch_size=2, warmup_steps=0
    )
    sizes = LoopSizes(
        moderated_with=2,
        moderated_without=1,
        eval_with=1,
        eval_without=1,
        rehearsal=1,
        served_checks=1,
        train_config={"full": True, "steps": 1, "batch_size": 2, "lr": 1e-4, "eval_fraction": 0.0},
        wait_s=150,
    )
    # tiny models' metrics are noise: a tolerance of 1 passes any candidate, but the gate still needs
    # both versions measured on the same labels
    settings = Settings(data_dir=tmp_path / "data", kafka_bootstrap=kafka_bootstrap, eval_tolerance=1.0)
    report = run_loop(settings, sizes, spec, postgres_url=postgres_url, out=tmp_path / "report.json", keep=True)
    database = sa.engine.make_url(postgres_url).set(database=report["database"]).render_as_string(hide_password=False)
    engine = sa.create_engine(database)
    try:
        with Session(engine) as s:
            (run,) = s.exec(select(TrainingRun)).all()
            events = s.exec(select(FeedbackRow)).all()
            versions = {v.version: v for v in s.exec(select(ModelVersion))}
            served = s.exec(select(Analysis).where(Analysis.video_id.startswith("served-"))).all()
            reviews = s.exec(select(Review)).all()
    finally:
        engine.dispose()
        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{report["database"]}" WITH (FORCE)'))
        admin.dispose()

    # the moderators' API actions: one feedback event each, all stored, all used by the one run
    m = report["moderation"]
    assert m["clips"] == 3 and m["trigger_threshold"] == 3 and m["events"] >= 3
    assert m["actions"]["missed"] + m["actions"]["confirm"] >= 2  # both clips showing weapons taught
    assert len(events) == m["events"] == len(reviews)
    assert {e.kind for e in events} == {"moderation_decision"} and {e.used_in_run for e in events} == {run.run_id}
    # queued by the streams app's trigger (not by hand), executed by `keye train worker`, succeeded
    streams_log = (Path(report["run_dir"]) / "logs" / "streams.log").read_text()
    assert f"queued training run {run.run_id}" in streams_log
    assert "succeeded" in (Path(report["run_dir"]) / "logs" / "train-worker.log").read_text()
    assert run.status == "succeeded" and run.output_version == report["version"] and run.config["full"] is True
    assert report["run"]["replayed"] >= 3 and "rehearsal" in run.config["replay_corpus"]  # one clip's tasks
    assert run.base_version == report["base_version"] == "keye-demo-no-weapons"
    # promoted through the gate, measured on the held-out set, and served by the restarted worker
    new = versions[report["version"]]
    assert new.status == "active" and versions["keye-demo-no-weapons"].status == "retired"
    assert new.metrics["promotion"]["verdict"] == "passed" and not new.metrics["promotion"]["forced"]
    assert report["promotion"]["promoted"] and report["promotion"]["dataset"]["id"] == report["eval_set"]["id"]
    assert report["eval_set"]["videos"] == 2 and report["eval_set"]["showing"] == 1
    assert [a.model_version for a in served] == [report["version"]]
    assert report["served"] == {served[0].video_id: report["version"]}
    # before/after, the withheld category's recall among them, also written as JSON
    for side in ("before", "after"):
        assert {"weapons.recall", "moderation.recall", "tags.micro_f1", "moderation.overkill"} <= set(report[side])
        assert report[side]["weapons.recall"] is not None  # the eval set holds a weapons clip
    assert json.loads((tmp_path / "report.json").read_text())["after"] == report["after"]
    assert table(report).row_count == len(report["before"])
    assert any("promoted" in line for line in summary_lines(report))
