"""Full-parameter training on labelled corpus clips: every task's ground truth as grammar-valid examples
through the feedback path's builder, the loss falls with the vision tower learning, a resumed run
continues the uninterrupted one exactly, accumulation and data parallelism (2 gloo ranks) equal one
larger batch, and the contrastive objective brings each video's caption to the top."""

from __future__ import annotations

import dataclasses
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

import corpus
import keye_model
from analysis import answers as A
from analysis import prompts
from analysis.analyzer import chunk_video
from analysis.grammar import GrammarBook
from analysis.output import parse_output
from analysis.segments import chunk_segments, segment_video
from service.train_config import TrainConfigError
from training.contrastive import Contrastive, _embed, caption_pairs, caption_ranks
from training.corpus_examples import corpus_examples
from training.distributed import join_from_env
from training.full import FullConfig, PassFront, Supervised, latest_checkpoint, train_full
from training.sft import FrontCache, answer_nll, sft_loss

CLIPS = 4
FAST = dict(lr=1e-3, schedule="constant", max_grad_norm=1.0)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "train"
    corpus.make(out, seed=0, clips=CLIPS, split="train")
    return out


@pytest.fixture(scope="module")
def made(corpus_dir, processor, tight_config):
    return corpus_examples(processor, tight_config, corpus_dir)


def _tiny():
    return keye_model.load("keye-tiny", seed=0)


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _close(a: dict, b: dict) -> None:
    # Adam divides by the gradient's own scale: a near-zero gradient that differs by rounding moves its
    # weight by a fraction of lr (1e-3); everything else agrees to float32 precision.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, msg=k)


# ---- corpus examples ----------------------------------------------------------------------------


def test_corpus_examples_teach_every_task_its_ground_truth(made, corpus_dir, processor, tight_config):
    import xgrammar as xgr

    labels = {c.video_id: c for c in corpus.load_labels(corpus_dir)}
    assert not made.skipped
    assert sorted({(e.video_id, e.task) for e in made.examples}) == sorted(
        (v, t) for v in labels for t in ("tags", "summary", "moderation", "products")
    )
    book = GrammarBook(tight_config, processor.tokenizer)
    for ex in made.examples:
        n_segments = len(made.clips[ex.video_id][int(ex.key.rsplit(":", 1)[1])].segments)
        matcher = xgr.GrammarMatcher(book.compiled(ex.task, n_segments))
        for t in ex.input_ids[ex.prompt_len :].tolist():
            assert matcher.accept_token(t), f"{ex.key}: token {t} refused in {ex.answer!r}"
        assert matcher.is_terminated(), ex.key
        parsed = parse_output(ex.answer)
        assert parsed.ok, ex.key
        truth = labels[ex.video_id].record
        if ex.task == "summary":
            lim = tight_config.task("summary").limits
            assert parsed.answer["short"] == A.clean_text(truth.summary.short, lim["short_chars"])
        elif ex.task == "tags":
            assert {t["label"] for t in parsed.answer["tags"]} <= {t.label for t in truth.tags}
            assert parsed.answer["tags"]
        elif ex.task == "moderation":
            want = {c.category for c in truth.moderation.categories}
            assert {c["category"] for c in parsed.answer["categories"]} == want


def test_corpus_prompts_are_the_analyzers(made, corpus_dir, processor, tight_config):
    clip = corpus.load_labels(corpus_dir)[0]
    b = tight_config.video
    video = processor.load_video(
        str(corpus_dir / clip.file),
        fps=b.fps,
        max_frames=b.max_frames,
        max_pixels=b.max_pixels,
        min_pixels=b.min_pixels,
    )
    segs = segment_video(video.frames, video.timestamps, video.duration_s, tight_config.segmentation)
    chunk = chunk_segments(segs, video.timestamps, b.frames_per_pass)[0]
    prefix = prompts.prefix_inputs(processor, chunk_video(video, chunk))
    for ex in [e for e in made.examples if e.video_id == clip.video_id]:
        cont = prompts.continuation_ids(processor, tight_config, ex.task, chunk.segments)
        want = prefix["input_ids"][0].tolist() + cont
        assert ex.input_ids[: ex.prompt_len].tolist() == want, ex.key


# ---- full training ------------------------------------------------------------------------------


def test_full_training_lowers_the_loss_and_trains_the_vision_tower(made):
    batch = made.examples[:2]
    model = _tiny()
    before = _params(model)
    with torch.no_grad():
        loss0, _ = sft_loss(model, FrontCache(model, False), batch)
    result = train_full(model, batch, FullConfig(steps=6, batch_size=2, **FAST), Supervised())
    with torch.no_grad():
        loss1, _ = sft_loss(model, FrontCache(model, False), batch)
    assert result.losses[0] == pytest.approx(float(loss0), rel=1e-4)
    assert float(loss1) < float(loss0) - 1.0, result.losses
    after = _params(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for part in ("visual.", "mlp_AR.", "model.layers.", "model.embed_tokens.", "lm_head."):
        assert any(k.startswith(part) for k in changed), part


def test_resume_continues_exactly_like_an_uninterrupted_run(made, tmp_path):
    cfg = FullConfig(steps=4, batch_size=1, grad_accum=2, checkpoint_every=2, **FAST)
    items = made.examples[:6]
    whole = _tiny()
    straight = train_full(whole, items, cfg, Supervised(), checkpoint_dir=tmp_path / "a")

    class Interrupted(Exception):
        pass

    def stop(step, loss, lr):
        if step == 2:  # after the checkpoint of step 2, during step 3
            raise Interrupted

    with pytest.raises(Interrupted):
        train_full(_tiny(), items, cfg, Supervised(), checkpoint_dir=tmp_path / "b", log_step=stop)
    assert latest_checkpoint(tmp_path / "b").name == "step-00000002.pt"
    assert not list((tmp_path / "b").glob(".*"))  # no temporary file left behind
    resumed_model = keye_model.load("keye-tiny", seed=7)  # the checkpoint, not the init, decides
    resumed = train_full(resumed_model, items, cfg, Supervised(), checkpoint_dir=tmp_path / "b")
    assert resumed.first_step == 2 and resumed.losses == straight.losses[2:]
    a, b = _params(whole), _params(resumed_model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["step-00000002.pt", "step-00000004.pt"]
    again = train_full(_tiny(), items, cfg, Supervised(), checkpoint_dir=tmp_path / "a")  # a finished run is kept
    assert again.first_step == 4 and again.losses == []
    with pytest.raises(TrainConfigError, match="differs in seed"):
        train_full(_tiny(), items, dataclasses.replace(cfg, seed=1), Supervised(), checkpoint_dir=tmp_path / "a")


def test_accumulating_two_micro_batches_of_one_is_one_batch_of_two(made):
    items = made.examples[:4]
    runs = []
    for bs, accum in ((1, 2), (2, 1)):
        model = _tiny()
        runs.append(
            (
                train_full(
                    model, items, FullConfig(steps=2, batch_size=bs, grad_accum=accum, **FAST), Supervised()
                ).losses,
                _params(model),
            )
        )
    (la, pa), (lb, pb) = runs
    assert la == pytest.approx(lb, rel=1e-5)
    _close(pa, pb)


def test_a_pass_runs_the_vision_tower_once_for_all_its_tasks(made):
    """Sharing the pass's prefix computes what packing each example alone computes (values and gradients)."""
    batch = [e for e in made.examples if e.key.startswith(made.examples[0].video_id)]
    assert len(batch) == 4 and all(e.vision is batch[0].vision and e.prefix_len for e in batch)
    model = _tiny().requires_grad_(True)
    calls = []
    model.visual.register_forward_hook(lambda *_: calls.append(1))
    shared = Supervised().loss_sum(model, batch)
    shared.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert len(calls) == 1
    alone = answer_nll(model, FrontCache(model, False, frozen=False), batch)[0]
    alone.backward()
    assert len(calls) == 1 + len(batch)
    torch.testing.assert_close(shared, alone, rtol=1e-5, atol=1e-4)
    assert any(k.startswith("visual.") for k in grads)
    for k, g in grads.items():
        torch.testing.assert_close(g, model.get_parameter(k).grad, rtol=1e-3, atol=1e-5, msg=k)


def test_full_config_refuses_a_cached_front():
    with pytest.raises(TrainConfigError, match="cache_inputs"):
        FullConfig(cache_inputs=True)


# ---- contrastive --------------------------------------------------------------------------------


def test_contrastive_training_ranks_each_videos_caption_first(made, processor):
    pairs = caption_pairs(processor, made)
    assert len(pairs) == CLIPS
    model = _tiny()
    with torch.no_grad():  # the training pooling is the serving one
        c = pairs[0].passes[0]
        torch.testing.assert_close(_embed(model, c.ids[None], **c.vision), model.embed(c.ids[None], **c.vision))
    objective = Contrastive(temperature=0.1)
    result = train_full(model, pairs, FullConfig(steps=16, batch_size=CLIPS, **FAST), objective)
    assert result.losses[-1] < result.losses[0] * 0.5, result.losses
    assert objective.temperature != pytest.approx(0.1)  # learned
    assert caption_ranks(model, pairs) == [0] * CLIPS


def test_answers_and_captions_read_each_video_off_the_answers_forward(made, processor):
    from training.contrastive import AnswersAndCaptions, caption_table
    from training.sft import packed_hidden

    model = _tiny()
    captions = caption_table(processor, made)
    batch = [next(ex for ex in made.examples if ex.video_id == vid and ex.task == "tags") for vid in list(made.clips)]
    with torch.no_grad():  # the prefix's hidden states in the packed batch pool to the serving embedding
        hidden = packed_hidden(model, PassFront(model), batch)
        ex, c = batch[1], made.clips[batch[1].video_id][0]
        start = batch[0].input_ids.shape[0]
        pooled = torch.nn.functional.normalize(hidden[start : start + ex.prefix_len].mean(0), dim=-1)
        torch.testing.assert_close(pooled[None], model.embed(c.ids[None], **c.vision), rtol=1e-4, atol=1e-5)
    objective = AnswersAndCaptions(captions, contrastive_weight=1.0, temperature=0.1)
    train_full(model, batch, FullConfig(steps=16, batch_size=CLIPS, **FAST), objective)
    nll, nce = zip(*objective.parts)
    assert nll[-1] < nll[0] * 0.5 and nce[-1] < nce[0] * 0.5, objective.parts
    assert caption_ranks(model, caption_pairs(processor, made)) == [0] * CLIPS  # as the analyzer embeds


# ---- data parallelism ---------------------------------------------------------------------------


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    w = join_from_env()
    items = torch.load(os.path.join(folder, "items.pt"), weights_only=False)
    model = _tiny()
    result = train_full(
        model,
        items,
        FullConfig(steps=2, batch_size=1, grad_accum=2, checkpoint_every=2, **FAST),
        Supervised(),
        checkpoint_dir=os.path.join(folder, "checkpoints"),
        world=w,
    )
    torch.save(
        {"losses": result.losses, "params": _params(model), "written": result.checkpoints},
        os.path.join(folder, f"rank{w.rank}.pt"),
    )
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_match_one_process_on_the_combined_batch(made, tmp_path):
    """Accumulating 2 micro-batches (the first without DDP's gradient sync), checkpoints written by rank 0."""
    items = made.examples[:4]
    torch.save(items, tmp_path / "items.pt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["losses"] == r1["losses"]
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    model = _tiny()
    single = train_full(model, items, FullConfig(steps=2, batch_size=2, grad_accum=2, **FAST), Supervised())
    assert single.losses == pytest.approx(r0["losses"], rel=1e-5)
    _close(r0["params"], _params(model))
    assert [p.name for p in r0["written"]] == ["step-00000002.pt"] and r1["written"] == []
    last = torch.load(r0["written"][-1], weights_only=False)
    assert last["schedule"]["world_size"] == 2
    assert all(torch.equal(last["trainee"][f"model.{k}"], v) for k, v in r0["params"].items())
