"""`keye demo` on a tiny keye-demo (3 train clips, 4 steps) and 2 held-out clips plus one sample clip:
the first run trains, analyzes and stores every clip, prints each record with the ground truth, the
eval table of keye-demo against keye-tiny and text searches over the stored vectors; the next run
reuses the model, the stored records and both reports; a retrained model analyzes again."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from demo.showcase import BASELINE, NAME, run_showcase
from service.settings import Settings
from stores.vectors import VectorStore
from training.demo_spec import ANALYSIS_CONFIG, DEMO

TINY = {
    "hidden_size": 128,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "torch_dtype": "float32",
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1},
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    torch.set_num_threads(1)
    raw = json.loads(ANALYSIS_CONFIG.read_text())
    raw["video"].update({"max_frames": 4, "frames_per_pass": 4, "max_pixels": 12544})  # 4 small frames a clip
    path = tmp_path_factory.mktemp("config") / "analysis.json"
    path.write_text(json.dumps(raw))
    return DEMO.with_(shape=TINY, analysis_config=path, train_clips=3, steps=4, batch_size=2, warmup_steps=1)


def _show(settings: Settings, spec, sample: Path):
    out = io.StringIO()
    shown = run_showcase(
        settings, spec=spec, clips=2, samples=[sample], console=Console(file=out, width=200), progress=False
    )
    return shown, out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, spec, sample_clips):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), database_url=None, qdrant_url=None, qdrant_path=None)
    sample = min(sample_clips, key=lambda p: p.stat().st_size)
    return settings, sample, _show(settings, spec, sample), _show(settings, spec, sample)


def test_the_first_run_trains_analyzes_stores_and_shows_everything(runs):
    settings, sample, (shown, text), _ = runs
    held_out = sorted(p.stem for p in (shown.corpus / "clips").iterdir())
    assert shown.trained and shown.model == settings.data_dir / "models" / NAME
    assert f"training {NAME} once" in text
    assert len(held_out) == 2 and not shown.failed and not shown.reused
    assert set(shown.analyzed) == set(shown.records) and len(shown.records) == 3
    for record in shown.records.values():
        assert record.model_version == NAME and record.embedding and record.frames_used == 4
    for name in [sample.name, *held_out]:
        assert f"{name}  (" in text  # one panel per clip
    assert text.count("moderation: ") == 3 and text.count("truth: ") == 2  # ground truth beside corpus clips

    home = settings.data_dir / "demo"
    store = VectorStore(path=home / "qdrant")
    try:
        assert store.count({"model_version": NAME}) == 3
    finally:
        store.close()

    ours, theirs = shown.reports[NAME], shown.reports[BASELINE]
    assert ours["dataset"]["id"] == theirs["dataset"]["id"] and ours["dataset"]["videos"] == 2
    assert (
        ours["prompt_version"]
        == theirs["prompt_version"]
        == json.loads((shown.model / "analysis_config.json").read_text())["version"]
    )  # keye-tiny under keye-demo's config
    assert "┃ metric " in text and f"┃ {NAME} " in text and f"┃ {BASELINE} " in text

    assert [q.query for q in shown.searches[:2]] == ["a red car", "a cat in the snow"]
    for q in shown.searches:
        assert len(q.hits) == 3 and all(h.payload["model_version"] == NAME for h in q.hits)
        assert [h.score for h in q.hits] == sorted((h.score for h in q.hits), reverse=True)
        assert f"search {q.query!r}"[:60] in text
    assert f"KEYE_QDRANT_PATH={home / 'qdrant'} keye api" in text
    captioned = [q for q in shown.searches if q.relevant]
    assert captioned and all(q.relevant in {h.video_id for h in q.hits} for q in captioned)


def test_the_second_run_reuses_the_model_the_records_and_the_reports(runs):
    _, _, (first, _), (second, text) = runs
    assert not second.trained and second.model == first.model and f"training {NAME} once" not in text
    assert second.analyzed == [] and set(second.reused) == set(first.records)
    assert sorted(second.reports_reused) == sorted([NAME, BASELINE])
    assert {v: r.summary for v, r in second.records.items()} == {v: r.summary for v, r in first.records.items()}
    assert text.count("moderation: ") == 3 and f"┃ {BASELINE} " in text


def test_a_retrained_model_analyzes_again_and_keeps_the_baseline_report(runs, spec):
    settings, sample, (first, _), _ = runs
    third, _ = _show(settings, spec.with_(steps=3), sample)
    assert third.trained and set(third.analyzed) == set(first.records) and not third.reused
    assert third.reports_reused == [BASELINE]


def test_a_record_is_printed_as_the_model_wrote_it_even_with_brackets():
    from demo.render import record_panel
    from service.schemas import AnalysisRecord, CategoryFlag, Evidence, Moderation, Summary, TagScore, utcnow

    record = AnalysisRecord(
        analysis_id="a",
        video_id="v",
        model_version=NAME,
        prompt_version="p",
        duration_s=3.0,
        frames_used=2,
        tags=[TagScore(label="[/bold]", score=0.5, start_s=0.0, end_s=1.5)],
        embedding_dim=0,
        created_at=utcnow(),
        summary=Summary(title="[red]x[/red]", short="a [b] c"),
        moderation=Moderation(
            status="flagged",
            categories=[
                CategoryFlag(
                    category="weapons",
                    severity=2,
                    confidence=0.9,
                    evidence=[Evidence(start_s=1.0, end_s=2.0, reason="[gun]")],
                )
            ],
        ),
    )
    out = io.StringIO()
    Console(file=out, width=120).print(record_panel(record, "clip[1].mp4"))
    text = out.getvalue()
    for literal in (
        "[/bold]",
        "[red]x[/red]",
        "a [b] c",
        "1.0-2.0s [gun]",
        "clip[1].mp4",
        "0.0-1.5s",
        "moderation: flagged",
        "weapons",
        "0.90",
    ):
        assert literal in text
