"""Keye's chat template (chat_template.json of the release) in plain Python.

Each image renders as <|vision_start|><|image_pad|><|vision_end|> and each video with
<|video_pad|>; the processor later repeats the pad once per merged vision token.
Thinking control is a `/think` or `/no_think` suffix on the last user text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ProcessorInputError

DEFAULT_SYSTEM = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
# The released template (data), kept to recognise it in a checkpoint folder; render() is its
# Python equivalent. A folder with a different template is rendered with Jinja instead.
RELEASED_TEMPLATE = "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
THINKING_SUFFIX = {None: "", "think": "/think", "no_think": "/no_think"}


def is_image(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "image" or "image" in item or "image_url" in item


def is_video(item: Mapping[str, Any]) -> bool:
    return item.get("type") == "video" or "video" in item


def _check(messages: Sequence[Mapping[str, Any]]) -> None:
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise ProcessorInputError("a conversation must be a non-empty list of messages")
    for m in messages:
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ProcessorInputError(f"each message needs 'role' and 'content', got {m!r:.120}")
        content = m["content"]
        if not isinstance(content, str):
            if not isinstance(content, Sequence) or any(not isinstance(c, Mapping) for c in content):
                raise ProcessorInputError("message content must be a string or a list of dicts")


def with_thinking(messages: Sequence[Mapping[str, Any]], thinking: str | None) -> list[dict[str, Any]]:
    """Copy of `messages` with the thinking suffix appended to the last user message's last text."""
    if thinking not in THINKING_SUFFIX:
        raise ProcessorInputError(f"thinking must be None, 'think' or 'no_think', got {thinking!r}")
    out = [dict(m) for m in messages]
    suffix = THINKING_SUFFIX[thinking]
    if not suffix:
        return out
    users = [i for i, m in enumerate(out) if m["role"] == "user"]
    if not users:
        raise ProcessorInputError("thinking mode needs a user message to carry the suffix")
    last = out[users[-1]]
    if isinstance(last["content"], str):
        last["content"] = last["content"] + suffix
        return out
    items = [dict(c) for c in last["content"]]
    texts = [i for i, c in enumerate(items) if "text" in c and not is_image(c) and not is_video(c)]
    if texts:
        items[texts[-1]]["text"] = str(items[texts[-1]]["text"]) + suffix
    else:
        items.append({"type": "text", "text": suffix})
    last["content"] = items
    return out


def render(
    messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, add_vision_id: bool = False
) -> str:
    """The prompt string, exactly as the released Jinja template renders it."""
    _check(messages)
    parts: list[str] = []
    n_img = n_vid = 0
    for i, m in enumerate(messages):
        if i == 0 and m["role"] != "system":
            parts.append(f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n")
        parts.append(f"<|im_start|>{m['role']}\n")
        content = m["content"]
        if isinstance(content, str):
            parts.append(content + "<|im_end|>\n")
            continue
        for c in content:
            if is_image(c):
                n_img += 1
                parts.append((f"Picture {n_img}: " if add_vision_id else "") + IMAGE_PLACEHOLDER)
            elif is_video(c):
                n_vid += 1
                parts.append((f"Video {n_vid}: " if add_vision_id else "") + VIDEO_PLACEHOLDER)
            elif "text" in c:
                parts.append(str(c["text"]))
        parts.append("<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def media_items(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Image and video items in prompt order."""
    return [
        c for m in messages if not isinstance(m["content"], str) for c in m["content"] if is_image(c) or is_video(c)
    ]


def render_jinja(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool = True,
    add_vision_id: bool = False,
) -> str:
    """Render a non-standard template from a checkpoint folder (needs jinja2)."""
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ProcessorInputError("this checkpoint has a custom chat template; install jinja2") from e
    _check(messages)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, add_vision_id=add_vision_id
    )
