"""`keye train demo` on a tiny spec (3 clips, 4 steps, a narrow shape of the architecture): the first call
trains and writes the released layout that loads back to the same logits, the next reuses it, an
interrupted run resumes to the same weights, a changed spec retrains, Settings select the folder and its
analysis configuration, the registry holds the version; the mixed objective's weights mean what they say."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

import corpus
import keye_model
from keye_model.checkpoint import from_config
from keye_model.config import shaped_config
from keye_model.processor import KeyeProcessor
from service.settings import Settings
from training.contrastive import AnswersAndCaptions, caption_table
from training.corpus_examples import corpus_examples
from training.demo import build_demo, demo_items, ensure_demo, train_corpus
from training.demo_spec import DEMO
from training.sft import FrontCache, sft_loss

TINY = {
    "hidden_size": 128,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "torch_dtype": "float32",
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1},
}
LAYOUT = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "chat_template.json",
    "analysis_config.json",
    "demo.json",
}


@pytest.fixture(scope="module")
def spec(tight_config_path):
    # train seed 1: its first clip shows drugs (the withheld-category test needs one)
    return DEMO.with_(
        shape=TINY,
        analysis_config=tight_config_path,
        train_seed=1,
        train_clips=3,
        steps=4,
        batch_size=2,
        lr=1e-3,
        warmup_steps=1,
    )


def _settings(folder) -> Settings:
    return Settings(data_dir=folder / "data", database_url=f"sqlite:///{folder / 'keye.db'}")


@pytest.fixture(scope="module")
def first(tmp_path_factory, spec):
    s = _settings(tmp_path_factory.mktemp("demo"))
    return s, build_demo(s, spec, progress=False, checkpoint_every=2)


@pytest.fixture(scope="module")
def examples(first, spec, processor, tight_config):
    return corpus_examples(processor, tight_config, train_corpus(first[0], spec))


def _logits(model, example):
    with torch.no_grad():
        return model(**example.model_inputs())


def test_first_call_trains_and_writes_the_released_layout(first, spec, examples):
    s, made = first
    assert not made.reused and made.path == s.data_dir / "models" / "keye-demo"
    assert LAYOUT <= {p.name for p in made.path.iterdir()}
    assert not (s.data_dir / "models" / "keye-demo.partial").exists()  # checkpoints dropped once written
    assert made.info["fingerprint"] == spec.fingerprint() and made.info["losses"]["steps"] == 4
    assert made.info["corpus"]["clips"] == 3 and made.info["corpus"]["captions"] == 3
    assert (made.path / "analysis_config.json").read_bytes() == spec.analysis_config.read_bytes()

    loaded = keye_model.load(made.path)
    assert torch.equal(_logits(loaded, examples.examples[0]), _logits(made.model, examples.examples[0]))
    init = from_config(shaped_config(spec.shape), seed=spec.seed)  # trained: every part moved from its init
    for part in ("visual.", "mlp_AR.", "model.layers.", "lm_head."):
        name = next(n for n, _ in init.named_parameters() if n.startswith(part))
        assert not torch.equal(init.get_parameter(name), loaded.get_parameter(name)), name
    processor, again = KeyeProcessor(), KeyeProcessor.from_pretrained(made.path)  # the files read back the same
    text = "<|im_start|>user\nA red bottle <think>spins</think><|im_end|>"
    assert again.tokenizer.encode(text) == processor.tokenizer.encode(text)
    assert again.budgets == processor.budgets and again.chat_template == processor.chat_template


def test_second_call_reuses_the_folder(first, spec, caplog):
    s, made = first
    with caplog.at_level(logging.INFO, logger="training.demo"):
        path = ensure_demo(s, spec, progress=False)
        again = build_demo(s, spec, progress=False)
    assert path == made.path and again.reused and again.model is None
    assert again.info["created_at"] == made.info["created_at"]
    assert "reusing" in caplog.text


def test_an_interrupted_run_resumes_to_the_same_weights(first, spec, tmp_path):
    s = _settings(tmp_path)

    class Interrupted(Exception):
        pass

    def stop(step, loss, lr):
        if step == 2:  # the step after the checkpoint of step 2
            raise Interrupted

    with pytest.raises(Interrupted):
        build_demo(s, spec, progress=False, checkpoint_every=2, log_step=stop)
    assert not (s.data_dir / "models" / "keye-demo").exists()
    resumed = build_demo(s, spec, progress=False, checkpoint_every=2)
    assert resumed.info["resumed_at"] == 2 and resumed.info["losses"]["steps"] == 2
    assert resumed.info["losses"]["last"] == pytest.approx(first[1].info["losses"]["last"], rel=1e-6)
    a, b = (load_file(p / "model.safetensors") for p in (first[1].path, resumed.path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_settings_select_keye_demo_and_its_analysis_configuration(first, tmp_path):
    s, made = first
    chosen = Settings(model="keye-demo", data_dir=s.data_dir)
    assert chosen.model == str(made.path) and chosen.analysis_config == made.path / "analysis_config.json"
    assert (
        Settings(model="keye-demo", data_dir=s.data_dir, analysis_config=tmp_path / "x.json").analysis_config
        == tmp_path / "x.json"
    )  # KEYE_ANALYSIS_CONFIG wins
    assert Settings(model=str(made.path)).analysis_config == made.path / "analysis_config.json"
    missing = Settings(model="keye-demo", data_dir=tmp_path)
    assert missing.analysis_config is None
    with pytest.raises(keye_model.CheckpointError, match="keye train demo"):
        keye_model.load(missing.model)


def test_the_registry_holds_the_version_without_changing_the_active_one(first):
    from sqlmodel import Session

    from stores.db import migrated_engine
    from training.registry import active_version, list_versions

    s, made = first
    with migrated_engine(s) as engine, Session(engine) as session:
        rows = {v.version: v for v in list_versions(session)}
        assert rows["keye-demo"].status == "candidate" and rows["keye-demo"].path == str(made.path)
        assert rows["keye-demo"].metrics["demo"]["fingerprint"] == made.info["fingerprint"]
        assert active_version(session).version == "keye-tiny"  # KEYE_MODEL, registered on first use


def test_an_interrupted_corpus_generation_is_redone(spec, tmp_path):
    s = _settings(tmp_path)
    demo = s.data_dir / "demo"
    (demo / ".corpus-train-1-3-v40.tmp" / "clips").mkdir(parents=True)  # what an interrupted generation leaves
    (demo / ".corpus-train-1-3-v40.tmp" / "clips" / "train-s1-0000.mp4").write_bytes(b"half a clip")
    folder = train_corpus(s, spec)
    assert folder == demo / "corpus-train-1-3-v40" and not (demo / ".corpus-train-1-3-v40.tmp").exists()
    assert len(corpus.load_labels(folder)) == 3 and (folder / "corpus.json").is_file()
    assert train_corpus(s, spec) == folder  # complete: reused


def test_withheld_category_clips_are_not_taught(first, spec):
    s, _ = first
    folder = train_corpus(s, spec)
    drugs = {
        c.video_id
        for c in corpus.load_labels(folder)
        if any(m.category == "drugs" for m in c.record.moderation.categories)
    }
    assert drugs
    items, captions, described = demo_items(KeyeProcessor(), spec.with_(withheld=("drugs",)), folder)
    assert described["withheld_clips"] == len(drugs) and described["captions"] == 3 - len(drugs)
    assert items and not drugs & {ex.video_id for ex in items} and not drugs & set(captions)


def test_mixed_loss_is_mean_answer_nll_plus_weighted_mean_infonce(examples, processor):
    import torch.nn.functional as F

    made = examples
    captions = caption_table(processor, made)
    vids = list(made.clips)
    batch = [next(ex for ex in made.examples if ex.video_id == v) for v in vids] + [made.examples[1]]
    model = keye_model.load("keye-tiny")
    objective = AnswersAndCaptions(captions, contrastive_weight=0.5, temperature=0.1)
    with torch.no_grad():
        got = objective.loss_sum(model, batch) / objective.weight(batch)
        nll, _ = sft_loss(model, FrontCache(model, False), batch)
        # each distinct clip once (the repeated one is not its own negative), embedded as the analyzer does
        v = torch.cat([model.embed(made.clips[vid][0].ids[None], **made.clips[vid][0].vision) for vid in vids])
        t = torch.cat([model.embed(captions[vid][1], captions[vid][2]) for vid in vids])
        logits = 10.0 * v @ t.t()
        match = torch.arange(len(vids))
        nce = 0.5 * (F.cross_entropy(logits, match) + F.cross_entropy(logits.t(), match))
    torch.testing.assert_close(got, nll + 0.5 * nce, rtol=1e-4, atol=1e-4)
    assert objective.parts[-1] == (pytest.approx(float(nll), rel=1e-4), pytest.approx(float(nce), rel=1e-4))


def test_a_run_fine_tuning_keye_demo_exports_its_processor_files_and_analysis_config(
    first, settings, engine, sample_clips
):
    from sqlmodel import Session

    from service.train_config import LoraConfig, TrainConfig
    from stores.training_queue import queue_run
    from tests.support.training import seed_feedback
    from training.runner import PROCESSOR_FILES, execute_run

    made = first[1]
    s = settings.model_copy(update={"model": str(made.path)})
    with Session(engine) as session:
        seed_feedback(session, sample_clips)
        run = queue_run(session, s, TrainConfig(steps=2, cache_inputs=True, lora=LoraConfig(rank=2)))
    assert run.base_version == "keye-demo"
    done = execute_run(s, run.run_id)
    assert done.status == "succeeded", done.error
    export = s.data_dir / "models" / done.output_version
    written = {n for n in PROCESSOR_FILES if (made.path / n).is_file()}
    assert written and all((export / n).read_bytes() == (made.path / n).read_bytes() for n in written)
    assert (export / "analysis_config.json").read_bytes() == (made.path / "analysis_config.json").read_bytes()


def test_keye_train_demo_from_the_command_line(tmp_path):
    """The released spec's shape and analysis configuration, on 2 clips for 1 step; run again, reused."""
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "KEYE_DATA_DIR": str(tmp_path / "data"),
        "KEYE_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
        "KEYE_MODEL": "keye-demo",
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",
    }
    env.pop("KEYE_ANALYSIS_CONFIG", None)

    def demo(*args):
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "train", "demo", "--clips", "2", "--steps", "1", "--no-progress", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    folder = tmp_path / "data" / "models" / "keye-demo"
    assert f"written to {folder}" in demo()
    info = json.loads((folder / "demo.json").read_text())
    assert info["spec"]["shape"] == DEMO.shape and info["spec"]["steps"] == 1 and info["corpus"]["clips"] == 2
    assert info["corpus"]["examples"] == 8 and not info["corpus"]["skipped"]  # every task of both clips
    assert "reused" in demo()
    listed = subprocess.run(
        [sys.executable, "-m", "cli.main", "train", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0 and "keye-demo" in listed.stdout and "active" in listed.stdout


def test_a_second_build_of_the_same_name_waits_for_the_first(first, spec):
    import fcntl
    import threading

    s, made = first
    got = []
    with (s.data_dir / "models" / ".keye-demo.lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # as a build in another process holds it
        waiter = threading.Thread(target=lambda: got.append(build_demo(s, spec, progress=False)))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive() and not got
        fcntl.flock(f, fcntl.LOCK_UN)
    waiter.join(30)
    assert got and got[0].reused


def test_a_changed_spec_retrains(first, spec):
    """Last: it replaces the module's model."""
    s, made = first
    other = spec.with_(steps=3)
    redone = build_demo(s, other, progress=False, checkpoint_every=2)
    assert not redone.reused and redone.path == made.path
    assert redone.info["fingerprint"] == other.fingerprint() != made.info["fingerprint"]
    assert redone.info["losses"]["steps"] == 3
    assert build_demo(s, other, progress=False).reused
    from sqlmodel import Session

    from stores.db import ModelVersion, migrated_engine

    with migrated_engine(s) as engine, Session(engine) as session:  # the same version, its new figures
        assert session.get(ModelVersion, "keye-demo").metrics["demo"]["fingerprint"] == other.fingerprint()
