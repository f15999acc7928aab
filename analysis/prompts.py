"""Prompt texts: the shared visual prefix and each task's continuation, as token ids.

The prefix is the chat up to the end of the video (`...<|vision_start|><|video_pad|>*<|vision_end|>`);
a task continues it with the shot list, its instruction, the thinking suffix and the assistant
header. Cutting right after the special <|vision_end|> token keeps tokenization identical to
the whole prompt's (BPE never merges across a special token): the tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError
from analysis.segments import Segment

MODE_SUFFIX = {"no_think": "no_think", "think": "think", "auto": None}  # processor thinking argument
END_OF_USER = [151645, 198]  # "<|im_end|>" "\n": what the template puts after the last user item


def shots_text(segments: Sequence[Segment]) -> str:
    shots = "; ".join(f"shot {s.index}: {s.start_s:.1f}s-{s.end_s:.1f}s" for s in segments)
    return f"\nThe video has {len(segments)} shot{'s' if len(segments) != 1 else ''} ({shots}).\n"


def task_text(cfg: AnalysisConfig, task: str) -> str:
    t = cfg.task(task)
    categories = "\n".join(f"- {name}: {desc}" for name, desc in cfg.moderation_categories.items())
    values = {**t.limits, "categories": categories, "product_categories": ", ".join(cfg.product_categories)}
    try:
        return t.prompt.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise AnalysisError(f"task {task}: prompt has an unknown or malformed placeholder: {e}") from None


def user_text(cfg: AnalysisConfig, task: str, segments: Sequence[Segment]) -> str:
    return shots_text(segments) + task_text(cfg, task)


def messages(video, text: str | None) -> list[dict]:
    content: list[dict] = [{"type": "video", "video": video}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def continuation_ids(processor, cfg: AnalysisConfig, task: str, segments: Sequence[Segment]) -> list[int]:
    """Token ids that follow the prefix for one task: the rest of the whole prompt's text."""
    whole = processor.apply_chat_template(
        messages(None, user_text(cfg, task, segments)), thinking=MODE_SUFFIX[cfg.task(task).thinking]
    )
    head = processor.apply_chat_template(messages(None, None), add_generation_prompt=False)
    head = head[: -len("<|im_end|>\n")]
    if not whole.startswith(head):
        raise AnalysisError("the chat template does not keep the video prefix at the start of the prompt")
    return processor.tokenizer.encode(whole[len(head) :])


def prefix_inputs(processor, video) -> dict:
    """Model inputs of the shared prefix (the video message without its end of turn)."""
    inputs = processor(messages(video, None), add_generation_prompt=False)
    ids = inputs.input_ids[0].tolist()
    if ids[-2:] != END_OF_USER:
        raise AnalysisError("the chat template does not end a user turn with <|im_end|> and a newline")
    out = inputs.model_inputs()
    out["input_ids"] = inputs.input_ids[:, :-2]
    out["attention_mask"] = inputs.attention_mask[:, :-2]
    return out


def full_inputs(processor, cfg: AnalysisConfig, task: str, video, segments: Sequence[Segment]) -> dict:
    """The whole prompt of one task, as a separate request would send it (the no-reuse baseline)."""
    inputs = processor(messages(video, user_text(cfg, task, segments)), thinking=MODE_SUFFIX[cfg.task(task).thinking])
    return inputs.model_inputs()
