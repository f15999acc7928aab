"""Minimal safetensors reader/writer that never holds a second copy of the weights.

Reading uses plain file reads straight into each destination tensor's storage (no mmap, so
the page cache never shows up in our RSS); a dtype cast costs one tensor-sized temporary.
Writing streams each tensor's bytes from its own storage.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from keye_model.errors import CheckpointError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def read_header(path: Path) -> tuple[dict, int]:
    """(tensor entries, byte offset where the data starts)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path} is too short to be a safetensors file")
            (n,) = struct.unpack("<Q", raw)
            if n > 100 * 2**20:
                raise CheckpointError(f"{path} declares a {n}-byte header: not a safetensors file")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise CheckpointError(f"weights file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} has an unreadable safetensors header: {e}") from None
    header.pop("__metadata__", None)
    return header, 8 + n


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def iter_tensors(
    path: Path, want: dict[str, tuple[torch.Size, torch.dtype]]
) -> Iterator[tuple[str, torch.Tensor | None]]:
    """Yield (name, CPU tensor in the wanted dtype) for the file's tensors, one at a time.

    `want` maps names to expected (shape, dtype); a name not in it is yielded as None so the
    caller can report it.
    """
    header, base = read_header(path)
    with open(path, "rb", buffering=0) as f:
        for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if name not in want:
                yield name, None
                continue
            shape, dtype = want[name]
            stored = DTYPES.get(entry["dtype"])
            if stored is None:
                raise CheckpointError(f"tensor '{name}' in {path.name} has unsupported dtype {entry['dtype']}")
            if tuple(entry["shape"]) != tuple(shape):
                raise CheckpointError(
                    f"tensor '{name}' in {path.name} has shape {tuple(entry['shape'])}, the model expects {tuple(shape)}"
                )
            start, end = entry["data_offsets"]
            out = torch.empty(shape, dtype=stored)
            if out.numel() * out.element_size() != end - start:
                raise CheckpointError(f"tensor '{name}' in {path.name} has a byte size that does not match its shape")
            if out.numel():
                f.seek(base + start)
                view = _as_bytes(out).numpy().data  # the tensor's own bytes: readinto fills it in place
                got = 0
                while got < len(view):
                    n = f.readinto(view[got:])
                    if not n:
                        raise CheckpointError(f"{path.name} is truncated inside tensor '{name}'")
                    got += n
            yield name, out if stored == dtype else out.to(dtype)


def write(path: Path, tensors: Iterable[tuple[str, torch.Tensor]], metadata: dict[str, str] | None = None) -> None:
    items = [(n, t.detach()) for n, t in tensors]
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, t in items:
        size = t.numel() * t.element_size()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, t in items:
            if t.numel():
                f.write(_as_bytes(t.contiguous().cpu()).numpy().data)
