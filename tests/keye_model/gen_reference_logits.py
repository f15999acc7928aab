"""Produce tests/keye_model/data/reference_logits.json with the OFFICIAL Keye implementation.

Not a test and not product code. It needs the reference environment, outside this repo:
  pip install --target /tmp/tf4 --no-deps transformers==4.51.3 huggingface_hub==0.30.2 tokenizers==0.21.1 einops
  the official files (Kwai-Keye/Keye, keye-vl-8b-preview/{modeling,configuration}_keye.py) in a
  package `keye_ref` on PYTHONPATH, and a module `stub_flash` that registers CPU stand-ins for
  flash_attn (varlen attention, non-interleaved rotary) before the official file is imported.
Run: PYTHONPATH=/tmp/tf4:/tmp/refpkg .venv/bin/python -m tests.keye_model.gen_reference_logits

Weights: the deterministic `keye-tiny` preset (seed SEED) with every matrix scaled by SCALE so
that the vision tower and rotary details move the logits well beyond the 1e-4 tolerance.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import stub_flash  # noqa: F401  (must precede the official import)
import torch
from keye_ref.configuration_keye import KeyeConfig as RefConfig
from keye_ref.modeling_keye import KeyeForConditionalGeneration

import keye_model
from tests.support.prompts import Prompt, batch, text_prompt

SEED, SCALE, NEW = 7, 4.0, 6
OUT = Path(__file__).parent / "data" / "reference_logits.json"


def parity_model():
    m = keye_model.load("keye-tiny", seed=SEED)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.mul_(SCALE)
    return m


def parity_prompts():
    return [
        text_prompt(21, 9),
        Prompt().text(10, 11).image(4, 6, seed=22).text(12, 13, 14),
        Prompt().text(15).video(3, 4, 4, 1 / 1.5, seed=23).text(16).image(6, 4, seed=24).text(17, 18),
    ]


def main() -> None:
    torch.manual_seed(0)
    ours = parity_model()
    inputs = batch(parity_prompts())
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d)
        cfg = RefConfig.from_pretrained(d)
        ref = KeyeForConditionalGeneration.from_pretrained(
            d, config=cfg, torch_dtype=torch.float32, attn_implementation="sdpa"
        )
        ref16 = KeyeForConditionalGeneration.from_pretrained(
            d, config=RefConfig.from_pretrained(d), torch_dtype=torch.bfloat16, attn_implementation="sdpa"
        )
    for model in (ref, ref16):
        model.eval()
        for m in model.modules():  # the vision tower only segments images/videos on its flash-attention path
            if type(m).__name__ == "SiglipAttention":
                m.config._attn_implementation = "flash_attention_2"
    feats = []
    ref.mlp_AR.register_forward_hook(lambda mod, args, out: feats.append([f.detach() for f in out]))
    with torch.no_grad():
        logits16 = ref16(**inputs).logits.float()
        logits = ref(**inputs).logits
        pos, deltas = ref.get_rope_index(
            inputs["input_ids"],
            inputs.get("image_grid_thw"),
            inputs.get("video_grid_thw"),
            inputs.get("second_per_grid_ts"),
            inputs["attention_mask"],
        )
        gen = ref.generate(
            **inputs,
            max_new_tokens=NEW,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=151643,
            temperature=None,
            top_k=None,
            top_p=None,
        )
    mask = inputs["attention_mask"].bool()
    rows = []
    for i in range(mask.shape[0]):
        real = logits[i][mask[i]]
        rows.append(
            {
                "last4_first16": real[-4:, :16].tolist(),
                "bf16_last4_first16": logits16[i][mask[i]][-4:, :16].tolist(),
                "argmax": real.argmax(-1).tolist(),
                "last_top5": real[-1].topk(5).indices.tolist(),
                "last_top5_values": real[-1].topk(5).values.tolist(),
                "positions": pos[:, i][:, mask[i]].tolist(),
                "greedy": gen[i, inputs["input_ids"].shape[1] :].tolist(),
            }
        )
    out = {
        "seed": SEED,
        "scale": SCALE,
        "new_tokens": NEW,
        "reference": "Kwai-Keye/Keye keye-vl-8b-preview/modeling_keye.py, transformers 4.51.3, float32, sdpa decoder",
        "rows": rows,
        "image_features_first8": [f[:, :8].tolist() for f in feats[0]],
        "video_features_first8": [f[:, :8].tolist() for f in feats[1]],
    }
    OUT.write_text(json.dumps(out))
    print("wrote", OUT, "greedy", [r["greedy"] for r in rows])


if __name__ == "__main__":
    main()
