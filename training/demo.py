"""`keye-demo`: a small model of the Keye-VL architecture trained here from random weights on the
generated corpus, written in the released HF layout and reused while its spec (training/demo_spec.py)
is unchanged.

    path = ensure_demo(settings)                  # data_dir/models/keye-demo, trained once
    made = build_demo(settings, DEMO.with_(steps=50), name="keye-demo-short", force=True)

Steps, each resumable: the train corpus (data_dir/demo/corpus-train-<seed>-<clips>-v<violating %>, generated into a
temporary folder and renamed, so only a complete one is reused), the examples of every analysis task
under the spec's analysis configuration plus caption pairs (clips of a withheld moderation category
left out), full training from the spec's shape under AnswersAndCaptions with checkpoints in
models/<name>.partial/checkpoints (an interrupted run resumes the same schedule), the model folder
written under <name>.partial/model and renamed into place. The folder holds the weights and config,
the processor files, analysis_config.json (the configuration it was trained for, which Settings
then use) and demo.json (the spec and its fingerprint, training time, losses, corpus). The folder is
registered as model version <name>, a candidate unless KEYE_MODEL already names it: training the
demo never changes which version the workers serve.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import corpus
from service.schemas import utcnow
from service.settings import DEMO_MODEL, MODEL_ANALYSIS_CONFIG, Settings
from training.demo_spec import DEMO, DemoSpec

if TYPE_CHECKING:  # imported where the bar is made: only a run with progress needs rich
    from rich.progress import Progress, TaskID

log = logging.getLogger("training.demo")

INFO_FILE = "demo.json"
CHECKPOINT_EVERY = 25  # steps; a checkpoint of the demo shape is ~0.5 GB with Adam's state


@dataclass
class DemoResult:
    path: Path  # the model folder
    version: str  # its model version in the registry
    reused: bool  # found complete with the same spec fingerprint: nothing was trained
    seconds: float  # this call, corpus and saving included
    info: dict[str, Any]  # demo.json
    model: Any = None  # the trained KeyeModel (None when reused)


def ensure_demo(settings: Settings, spec: DemoSpec = DEMO, name: str = DEMO_MODEL, progress: bool = True) -> Path:
    """The folder of the model `spec` describes, trained now unless it is already there."""
    return build_demo(settings, spec, name, progress).path


def build_demo(
    settings: Settings,
    spec: DemoSpec = DEMO,
    name: str = DEMO_MODEL,
    progress: bool = True,
    force: bool = False,
    checkpoint_every: int = CHECKPOINT_EVERY,
    log_step: Callable[[int, float, float], None] | None = None,
) -> DemoResult:
    """ensure_demo with the details: `force` retrains from scratch (the corpus is kept); `log_step` is
    called after each optimizer step like train_full's."""
    t0 = time.monotonic()
    models = Path(settings.data_dir) / "models"
    with _exclusive(models / f".{name}.lock", name):
        return _build(settings, spec, name, progress, force, checkpoint_every, log_step, models, t0)


@contextmanager
def _exclusive(path: Path, name: str) -> Iterator[None]:
    """One build of `name` at a time (two `make demo` at once): the second waits, then finds it built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: another process is building it; waiting", name)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(settings, spec, name, progress, force, checkpoint_every, log_step, models: Path, t0: float) -> DemoResult:
    final, partial = models / name, models / f"{name}.partial"
    fingerprint = spec.fingerprint()
    info = read_info(final)
    if force:
        shutil.rmtree(partial, ignore_errors=True)
    elif info is not None and info.get("fingerprint") == fingerprint:
        log.info("%s: reusing %s (spec %s, trained in %.0f s)", name, final, fingerprint, info["train_seconds"])
        register(settings, name, final, info)
        return DemoResult(final, name, True, time.monotonic() - t0, info)
    elif info is not None:
        log.info(
            "%s: %s was trained from spec %s; the spec is now %s: retraining",
            name,
            final,
            info.get("fingerprint"),
            fingerprint,
        )
    _own_partial(partial, fingerprint)
    model, info = _train(settings, spec, name, partial, checkpoint_every, progress, log_step)
    _put_in_place(partial / "model", final, partial)
    register(settings, name, final, info)
    seconds = time.monotonic() - t0
    log.info("%s: written to %s in %.0f s (training %.0f s)", name, final, seconds, info["train_seconds"])
    return DemoResult(final, name, False, seconds, info, model)


def read_info(folder: Path) -> dict | None:
    """demo.json of a complete model folder (written last, so its presence means complete)."""
    try:
        return json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def _own_partial(partial: Path, fingerprint: str) -> None:
    """Keep the checkpoints of an interrupted run of this spec; anything else there is dropped."""
    mark = partial / "fingerprint"
    if partial.exists() and (not mark.is_file() or mark.read_text() != fingerprint):
        log.info("dropping %s (another spec's run)", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    mark.write_text(fingerprint)
    shutil.rmtree(partial / "model", ignore_errors=True)  # a half-written folder of an interrupted save


def _put_in_place(new: Path, final: Path, partial: Path) -> None:
    """Rename the finished folder into place (an older one moved aside first), then drop the run's leftovers."""
    if final.exists():
        old = partial / "previous"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(partial)


# ---- corpus and items ---------------------------------------------------------------------------


def train_corpus(settings: Settings, spec: DemoSpec) -> Path:
    """The spec's train corpus folder, generated unless a complete one is there."""
    folder = (
        Path(settings.data_dir)
        / "demo"
        / (f"corpus-train-{spec.train_seed}-{spec.train_clips}-v{round(spec.violating_share * 100)}")
    )
    with _exclusive(folder.with_name(f".{folder.name}.lock"), folder.name):  # demos of several names share it
        return _made_corpus(folder, spec)


def _made_corpus(folder: Path, spec: DemoSpec) -> Path:
    if (folder / corpus.labels.CORPUS_FILE).is_file():
        log.info("corpus: reusing %s", folder)
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted generation is redone
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.monotonic()
    log.info("corpus: generating %d train clips (seed %d) into %s", spec.train_clips, spec.train_seed, folder)
    corpus.make(tmp, seed=spec.train_seed, clips=spec.train_clips, split="train", violating_share=spec.violating_share)
    os.replace(tmp, folder)
    log.info("corpus: %d clips in %.0f s", spec.train_clips, time.monotonic() - t0)
    return folder


def demo_items(processor, spec: DemoSpec, folder: Path) -> tuple[list, dict, dict]:
    """The supervised examples, the captions of their clips (AnswersAndCaptions) and a description."""
    from analysis.config import load_config
    from training.contrastive import caption_table
    from training.corpus_examples import corpus_examples

    t0 = time.monotonic()
    clips = corpus.load_labels(folder)
    withheld = set(spec.withheld)
    kept = [c for c in clips if not withheld & {m.category for m in c.record.moderation.categories}]
    made = corpus_examples(processor, load_config(spec.analysis_config), folder, clips=kept)
    captions = caption_table(processor, made) if spec.contrastive_weight else {}
    described = {
        "folder": str(folder),
        "split": "train",
        "seed": spec.train_seed,
        "clips": len(clips),
        "withheld": sorted(withheld),
        "withheld_clips": len(clips) - len(kept),
        "examples": len(made.examples),
        "captions": len(captions),
        "skipped": [list(s) for s in made.skipped],
    }
    for s in made.skipped:
        log.warning("corpus: %s %s not taught: %s", *s)
    log.info(
        "examples: %d from %d clips (%d withheld), %d captions, in %.0f s",
        len(made.examples),
        len(kept),
        len(clips) - len(kept),
        len(captions),
        time.monotonic() - t0,
    )
    return made.examples, captions, described


# ---- training -----------------------------------------------------------------------------------


def _train(
    settings: Settings, spec: DemoSpec, name: str, partial: Path, checkpoint_every: int, progress: bool, log_step
) -> tuple[Any, dict]:
    import keye_model
    from keye_model.checkpoint import from_config
    from keye_model.config import shaped_config
    from training.contrastive import AnswersAndCaptions
    from training.full import FullConfig, train_full
    from training.vocab import used_ids, zero_unused

    processor = keye_model.KeyeProcessor()
    folder = train_corpus(settings, spec)
    items, captions, described = demo_items(processor, spec, folder)
    model = from_config(shaped_config(spec.shape), device=settings.device, seed=spec.seed)
    vocab = None
    if spec.used_vocab:
        vocab = used_ids([*(ex.input_ids for ex in items), *(c[1] for c in captions.values())], model.config.vocab_size)
        zero_unused(model, vocab)
        log.info(
            "%s: %d of %d token rows used by the data train; the lm_head's others are zero",
            name,
            vocab.numel(),
            model.config.vocab_size,
        )
    cfg = FullConfig(
        steps=spec.steps,
        batch_size=spec.batch_size,
        grad_accum=spec.grad_accum,
        lr=spec.lr,
        warmup_steps=spec.warmup_steps,
        seed=spec.seed,
        checkpoint_every=checkpoint_every,
    )
    objective = AnswersAndCaptions(captions, spec.contrastive_weight, spec.temperature, spec.sampled_vocab)
    checkpoints = partial / "checkpoints"
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "%s: training %.1fM parameters for %d steps of %d examples (their clips' captions as the "
        "contrastive batch) on %s",
        name,
        n_params / 1e6,
        spec.steps,
        spec.batch_size * spec.grad_accum,
        settings.device,
    )
    start = _resumed_at(checkpoints)
    if start:
        log.info("%s: resuming the interrupted run at step %d of %d", name, start, spec.steps)
    with _StepReport(spec.steps, start, objective, progress, log_step, checkpoint_every) as report:
        result = train_full(model, items, cfg, objective, checkpoint_dir=checkpoints, log_step=report, vocab=vocab)
    model.requires_grad_(False)  # as keye_model.load gives it: ready to serve
    info = {
        "name": name,
        "fingerprint": spec.fingerprint(),
        "spec": _spec_json(spec),
        "parameters": n_params,
        "train_seconds": round(report.seconds, 1),
        "resumed_at": result.first_step,
        "losses": report.summary(),
        "corpus": described,
        "created_at": utcnow().isoformat(),
    }
    _write_folder(model, processor, spec, info, partial / "model")
    return model, info


def _resumed_at(checkpoints: Path) -> int:
    from training.full import CHECKPOINT, latest_checkpoint

    latest = latest_checkpoint(checkpoints)
    if latest is None:
        return 0
    found = CHECKPOINT.match(latest.name)
    assert found is not None, "latest_checkpoint returns only names CHECKPOINT matches"
    return int(found.group(1))


class _StepReport:
    """train_full's log_step: the progress bar with its ETA, a log line every `every` steps, the
    losses kept for demo.json (the steps trained by this call; a resumed run's earlier ones were
    reported by the call that trained them)."""

    def __init__(self, steps: int, start: int, objective, progress: bool, then, every: int) -> None:
        self.steps, self.start, self.objective, self.then = steps, start, objective, then
        self.every = max(every, 1)
        self.losses: list[float] = []
        self.parts: list[tuple[float, float | None]] = []
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]training[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
        self.t0 = self.seconds = 0.0

    def __enter__(self) -> _StepReport:
        self.t0 = time.monotonic()
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("training", total=self.steps, completed=self.start, loss="")
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.t0
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, step: int, loss: float, lr: float) -> None:
        nll, nce = _mean_parts(self.objective.parts)
        self.objective.parts.clear()
        self.losses.append(loss)
        self.parts.append((nll, nce))
        text = f"loss {loss:.3f} (answers {nll:.3f}" + (f", captions {nce:.3f})" if nce is not None else ")")
        if self.bar is not None:
            assert self.task is not None, "__enter__ adds the task with the bar"
            self.bar.update(self.task, completed=step + 1, loss=text)
        done = step + 1 - self.start
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            elapsed = time.monotonic() - self.t0
            eta = elapsed / done * (self.steps - step - 1)
            log.info("step %d/%d %s lr %.2e, %.0f s, ETA %.0f s", step + 1, self.steps, text, lr, elapsed, eta)
        if self.then is not None:
            self.then(step, loss, lr)

    def summary(self) -> dict[str, Any]:
        if not self.losses:
            return {"steps": 0}
        tail = max(1, len(self.losses) // 10)
        nll = [p[0] for p in self.parts]
        nce = [p[1] for p in self.parts if p[1] is not None]
        return {
            "steps": len(self.losses),
            "first": self.losses[0],
            "last": self.losses[-1],
            "last_tenth_mean": sum(self.losses[-tail:]) / tail,
            "answers_first": nll[0],
            "answers_last_tenth_mean": sum(nll[-tail:]) / tail,
            "captions_first": nce[0] if nce else None,
            "captions_last_tenth_mean": sum(nce[-tail:]) / len(nce[-tail:]) if nce else None,
        }


def _mean_parts(parts: list[tuple[float, float | None]]) -> tuple[float, float | None]:
    """A step's answer NLL and InfoNCE means over its micro-batches."""
    nll = sum(p[0] for p in parts) / max(len(parts), 1)
    nce = [p[1] for p in parts if p[1] is not None]
    return nll, (sum(nce) / len(nce) if nce else None)


def _spec_json(spec: DemoSpec) -> dict[str, Any]:
    raw = asdict(spec)
    raw["analysis_config"] = str(spec.analysis_config)
    return raw


# ---- the model folder ---------------------------------------------------------------------------


def _write_folder(model, processor, spec: DemoSpec, info: dict, folder: Path) -> None:
    """The released layout: weights and configs, processor files, the analysis configuration, demo.json last."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    write_processor_files(processor, folder)
    shutil.copyfile(spec.analysis_config, folder / MODEL_ANALYSIS_CONFIG)
    (folder / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")


def write_processor_files(processor, folder: Path) -> None:
    """The tokenizer and processor files of the release's layout, from the processor in use (the
    model has no source folder to copy them from): KeyeProcessor.from_pretrained reads them back."""
    from keye_model.processor.config import MEAN, MERGE, PATCH, STD
    from keye_model.processor.tokenizer import ADDED_TOKENS, PAD_ID

    folder = Path(folder)
    processor.tokenizer.tok.save(str(folder / "tokenizer.json"))
    token = {i: c for i, (c, _) in ADDED_TOKENS.items()}
    tokenizer_config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {
                "content": c,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": s,
            }
            for i, (c, s) in ADDED_TOKENS.items()
        },
        "additional_special_tokens": [c for i, (c, s) in ADDED_TOKENS.items() if s and i != PAD_ID],
        "bos_token": None,
        "chat_template": processor.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": token[processor.tokenizer.eos_ids[0]],
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": token[PAD_ID],
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    b = processor.budgets
    preprocessor = {
        "min_pixels": b.processor_min_pixels,
        "max_pixels": b.processor_max_pixels,
        "patch_size": PATCH,
        "temporal_patch_size": 1,
        "merge_size": MERGE,
        "image_mean": list(MEAN),
        "image_std": list(STD),
        "processor_class": "KeyeProcessor",
        "auto_map": {
            "AutoProcessor": "processing_keye.KeyeProcessor",
            "AutoImageProcessor": "image_processing_keye.SiglipImageProcessor",
        },
    }
    for fname, body in (
        ("tokenizer_config.json", tokenizer_config),
        ("preprocessor_config.json", preprocessor),
        ("chat_template.json", {"chat_template": processor.chat_template}),
    ):
        (folder / fname).write_text(json.dumps(body, indent=2) + "\n")


# ---- the registry -------------------------------------------------------------------------------


def register(settings: Settings, name: str, folder: Path, info: dict) -> None:
    """Model version `name` at `folder`, with the demo's figures in its metrics. The registry's first
    use makes KEYE_MODEL the active version (as for any run), so with KEYE_MODEL=keye-demo the demo is
    active, and otherwise a candidate that `keye train promote` can activate."""
    from sqlmodel import Session

    from stores.db import ModelVersion, migrated_engine
    from training import registry

    metrics = {"demo": {k: info.get(k) for k in ("fingerprint", "train_seconds", "losses", "parameters")}}
    with migrated_engine(settings) as engine, Session(engine) as session:
        registry.ensure_base(session, settings)
        row = session.get(ModelVersion, name)
        if row is None:
            registry.register_candidate(session, name, folder, None, metrics)
        else:  # retrained under the same name: same version, new figures
            row.path, row.metrics = str(folder), {**(row.metrics or {}), **metrics}
            session.add(row)
        session.commit()
