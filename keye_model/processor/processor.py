"""KeyeProcessor: messages in, model tensors out, the same as the official processor produces."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .config import MERGE, MediaLimits, PixelBudgets
from .errors import MediaError, ProcessorInputError
from .image import fit_image, open_image, pil_to_tensor, pixel_patches, requested_size
from .template import RELEASED_TEMPLATE, is_image, is_video, media_items, render, render_jinja, with_thinking
from .tokenizer import IMAGE_PAD_ID, PAD_ID, VIDEO_PAD_ID, KeyeTokenizer
from .video import VideoInput, VideoRequest, load_video, load_videos

_PADS = re.compile(r"<\|image_pad\|>|<\|video_pad\|>")
_VIDEO_KEYS = (
    "fps",
    "min_frames",
    "max_frames",
    "nframes",
    "min_pixels",
    "max_pixels",
    "total_pixels",
    "video_start",
    "video_end",
    "resized_height",
    "resized_width",
)


@dataclass
class KeyeInputs:
    """What the model takes; vision fields are None when the batch has no such media."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_grid_thw: torch.Tensor | None = None
    pixel_values_videos: torch.Tensor | None = None
    video_grid_thw: torch.Tensor | None = None
    second_per_grid_ts: torch.Tensor | None = None
    video_timestamps: list[list[float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Only the tensors, for `model(**inputs.model_inputs())`."""
        keys = (
            "input_ids",
            "attention_mask",
            "pixel_values",
            "image_grid_thw",
            "pixel_values_videos",
            "video_grid_thw",
            "second_per_grid_ts",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class KeyeProcessor:
    """Tokenizer + chat template + image and video preprocessing of Keye-VL-8B-Preview."""

    def __init__(
        self,
        tokenizer: KeyeTokenizer | None = None,
        budgets: PixelBudgets | None = None,
        limits: MediaLimits | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer or KeyeTokenizer()
        self.budgets = budgets or PixelBudgets()
        self.limits = limits or MediaLimits()
        self.chat_template = chat_template if chat_template is not None else RELEASED_TEMPLATE
        self.pad_id = PAD_ID

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, limits: MediaLimits | None = None) -> KeyeProcessor:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {folder}")
        budgets = PixelBudgets()
        if (folder / "preprocessor_config.json").is_file():
            budgets = PixelBudgets.from_preprocessor_config(folder / "preprocessor_config.json")
        template = None
        if (folder / "chat_template.json").is_file():
            template = json.loads((folder / "chat_template.json").read_text())["chat_template"]
        return cls(KeyeTokenizer(folder), budgets, limits, template)

    # ---- text -------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
        thinking: str | None = None,
        add_vision_id: bool = False,
    ) -> str:
        messages = with_thinking(messages, thinking)
        if self.chat_template == RELEASED_TEMPLATE:
            return render(messages, add_generation_prompt, add_vision_id)
        return render_jinja(self.chat_template, messages, add_generation_prompt, add_vision_id)

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(
        self, rows: Iterable[Iterable[int]] | torch.Tensor, skip_special_tokens: bool = False
    ) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]

    def parse_thinking(self, text: str) -> Any:
        """Split a generated text into its parts (delegates to keye_model.thinking)."""
        from keye_model.thinking import parse_thinking  # owned by the model package

        return parse_thinking(text)

    # ---- media ------------------------------------------------------------------------------
    def load_video(self, src: str | os.PathLike, **options: Any) -> VideoInput:
        """Decode and sample a video once; put the result in several messages' video items."""
        return load_video(src, self.budgets, self.limits, **options)

    def _image(self, item: Mapping[str, Any]) -> tuple[torch.Tensor, tuple[int, int, int]]:
        src = item.get("image", item.get("image_url"))
        if isinstance(src, Mapping):  # {"image_url": {"url": ...}} form
            src = src.get("url")
        if src is None:
            raise ProcessorInputError("an image item needs an 'image' (path, bytes or PIL image)")
        img = fit_image(
            open_image(src, self.limits),
            self.budgets,
            item.get("min_pixels"),
            item.get("max_pixels"),
            self.limits.max_aspect_ratio,
            requested_size(item),
        )
        return pixel_patches(pil_to_tensor(img)[None])

    def _frame_list(self, item: Mapping[str, Any]) -> VideoInput:
        """A video given as images: each fitted like an image, count padded to even."""
        frames = item["video"]
        if isinstance(frames, torch.Tensor):
            if frames.dim() != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
                raise ProcessorInputError("a video tensor must be uint8 of shape (T, 3, H, W)")
            frames = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]
        if not frames:
            raise ProcessorInputError("a video frame list is empty")
        imgs = [
            fit_image(
                open_image(f, self.limits),
                self.budgets,
                item.get("min_pixels"),
                item.get("max_pixels"),
                self.limits.max_aspect_ratio,
                requested_size(item),
            )
            for f in frames
        ]
        w, h = imgs[0].size  # the reference sizes every frame like the first
        imgs = [im if im.size == (w, h) else im.resize((w, h), Image.Resampling.BICUBIC) for im in imgs]
        if len(imgs) % 2:
            imgs.append(imgs[-1])
        fps = float(item.get("fps") or self.budgets.fps)
        tensor = torch.stack([pil_to_tensor(im) for im in imgs])
        return VideoInput(
            tensor, [i / fps for i in range(len(imgs))], fps, fps, len(imgs), list(range(len(imgs))), len(imgs) / fps
        )

    def _videos(self, items: list[Mapping[str, Any]]) -> list[VideoInput]:
        out: list[VideoInput | MediaError | None] = [None] * len(items)
        jobs: list[tuple[int, str, dict[str, Any]]] = []
        for i, item in enumerate(items):
            src = item.get("video")
            if isinstance(src, VideoInput):
                out[i] = src
            elif isinstance(src, (str, os.PathLike)):
                opts = {k: item[k] for k in _VIDEO_KEYS if item.get(k) is not None}
                VideoRequest.from_item(opts, self.budgets)  # reject bad options before any decoding
                jobs.append((i, str(src), opts))
            elif isinstance(src, (list, tuple, torch.Tensor)):
                out[i] = self._frame_list(item)
            else:
                raise ProcessorInputError("a video item needs 'video': a path, a frame list or a VideoInput")
        for (i, _, _), res in zip(jobs, load_videos([(s, o) for _, s, o in jobs], self.budgets, self.limits)):
            out[i] = res
        for r in out:
            if isinstance(r, MediaError):
                raise r
        return [r for r in out if isinstance(r, VideoInput)]

    # ---- everything -------------------------------------------------------------------------
    def __call__(
        self,
        messages: Sequence[Any],
        add_generation_prompt: bool = True,
        thinking: str | None = None,
        add_vision_id: bool = False,
    ) -> KeyeInputs:
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
            raise ProcessorInputError("messages must be a conversation or a list of conversations")
        batch = [messages] if isinstance(messages[0], Mapping) else list(messages)
        convs = [with_thinking(c, thinking) for c in batch]
        texts = [
            render(c, add_generation_prompt, add_vision_id)
            if self.chat_template == RELEASED_TEMPLATE
            else render_jinja(self.chat_template, c, add_generation_prompt, add_vision_id)
            for c in convs
        ]
        items = [it for c in convs for it in media_items(c)]
        images = [self._image(it) for it in items if is_image(it)]
        videos = self._videos([it for it in items if not is_image(it) and is_video(it)])

        out = KeyeInputs(input_ids=torch.empty(0), attention_mask=torch.empty(0))
        if images:
            out.pixel_values = torch.cat([p for p, _ in images])
            out.image_grid_thw = torch.tensor([g for _, g in images], dtype=torch.long)
        video_tokens: list[int] = []
        if videos:
            patches = [pixel_patches(v.frames) for v in videos]
            out.pixel_values_videos = torch.cat([p for p, _ in patches])
            out.video_grid_thw = grid = torch.tensor([g for _, g in patches], dtype=torch.long)
            video_tokens = [int(g.prod()) // (MERGE * MERGE) for g in grid]
            out.second_per_grid_ts = torch.tensor([1.0 / v.sample_fps for v in videos], dtype=torch.float32)
            out.video_timestamps = [list(v.timestamps) for v in videos]
        image_tokens = [t * h * w // (MERGE * MERGE) for _, (t, h, w) in images]
        rows = self._tokenize(texts, image_tokens, video_tokens)
        out.input_ids, out.attention_mask = self._left_pad(rows)
        return out

    def _tokenize(self, texts: list[str], image_tokens: list[int], video_tokens: list[int]) -> list[list[int]]:
        """Encode text between pads, then repeat each pad once per merged vision token."""
        img, vid = iter(image_tokens), iter(video_tokens)
        rows = []
        for text in texts:
            pieces = _PADS.split(text)
            pads = _PADS.findall(text)
            encoded = self.tokenizer.encode_batch(pieces)
            row: list[int] = []
            for i, ids in enumerate(encoded):
                row.extend(ids)
                if i < len(pads):
                    try:
                        n = next(img) if pads[i] == "<|image_pad|>" else next(vid)
                    except StopIteration:
                        raise ProcessorInputError("more vision pad tokens in the text than media items") from None
                    row.extend([IMAGE_PAD_ID if pads[i] == "<|image_pad|>" else VIDEO_PAD_ID] * n)
            rows.append(row)
        if next(img, None) is not None or next(vid, None) is not None:
            raise ProcessorInputError("fewer vision pad tokens in the text than media items")
        return rows

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r) :] = 1
        return ids, mask
