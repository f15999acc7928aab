"""Decode one video in a child process, so that FFmpeg crashing, hanging or ballooning on a
hostile file costs that file a typed error instead of taking the worker down.

Children come from a forkserver that has already imported the decoder, so starting one is cheap
and no threads of the parent are forked. The result (or the typed error) comes back by pipe.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import resource
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .config import MediaLimits, PixelBudgets
from .errors import DecodeTimeout, MediaError, ProcessorInputError, VideoDecodeError, VideoTooLarge

_CTX: Any = None
_LOCK = threading.Lock()


def _context() -> Any:
    global _CTX
    with _LOCK:
        if _CTX is None:
            _CTX = mp.get_context("forkserver")
            _CTX.set_forkserver_preload(["keye_model.processor.video"])
        return _CTX


def _child(
    conn: Any,
    decode: Callable[..., Any],
    src: str,
    budgets: PixelBudgets,
    limits: MediaLimits,
    threads: int,
    options: dict[str, Any],
) -> None:
    try:
        if limits.max_memory_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limits.max_memory_bytes, limits.max_memory_bytes))
        result: tuple[str, Any] = (
            "ok",
            decode(src, budgets, replace(limits, isolate=False), threads=threads, **options),
        )
    except (MediaError, ProcessorInputError) as e:
        result = ("err", e)
    except MemoryError:
        result = ("err", VideoTooLarge("decoding needs more memory than the cap", src))
    except BaseException as e:  # noqa: BLE001 - e.g. a library failing to load under the memory cap
        result = ("err", VideoDecodeError(f"decoder failed: {type(e).__name__}: {e}", src))
    try:
        # plain pickle: tensors travel as bytes (torch's shared-memory handles would die with us)
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - any object in the result may fail to pickle; the parent still gets an error
        data = pickle.dumps(("err", VideoDecodeError(f"decoder result could not be sent: {e}", src)))
    conn.send_bytes(data)
    conn.close()


def load_video_isolated(
    decode: Callable[..., Any],
    src: str,
    budgets: PixelBudgets,
    limits: MediaLimits,
    threads: int,
    options: dict[str, Any],
) -> Any:
    """`decode(src, budgets, limits, threads=, **options)` in a child process under the memory cap and
    time budget (video.load_video passes itself: a module function, sent to the child by name)."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, decode, src, budgets, limits, threads, options), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(limits.decode_timeout_s + limits.isolate_grace_s):
            raise DecodeTimeout(f"decoder process still busy after {limits.decode_timeout_s:g}s: killed", src)
        try:
            status, payload = pickle.loads(recv.recv_bytes())
        except (EOFError, OSError):
            proc.join(5)
            raise VideoDecodeError(f"the decoder process died (exit code {proc.exitcode})", src) from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if status == "ok":
        return payload
    raise payload
