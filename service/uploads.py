"""Stored uploads: the folder under KEYE_DATA_DIR (`settings.upload_dir`) that the API writes one
sub-folder per video into and the workers read from, its total size (the quota's measure), and the
removal of an upload whose analysis failed for good (nothing will read it again)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.settings import Settings

log = logging.getLogger("keye.uploads")


def stored_bytes(settings: Settings) -> int:
    """Bytes held by every upload, partial ones included (a walk of the folder: no index to drift)."""
    root = settings.upload_dir
    if not root.exists():
        return 0
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:  # removed while we walked
            continue
    return total


def upload_file(uri: str, settings: Settings) -> Path | None:
    """The stored upload a `file://` URI names, or None when it names anything else."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(unquote(parts.path)).resolve()
    root = settings.upload_dir
    return path if path.is_relative_to(root) and path != root else None


def discard(uri: str, settings: Settings) -> bool:
    """Delete the upload behind `uri` (and its emptied video folder); False when it is not an upload."""
    path = upload_file(uri, settings)
    if path is None:
        return False
    path.unlink(missing_ok=True)
    folder = path.parent
    if folder != settings.upload_dir:
        try:
            folder.rmdir()
        except OSError:  # not empty or already gone
            pass
    log.info("removed upload %s", path)
    return True


__all__ = ["stored_bytes", "upload_file", "discard"]
