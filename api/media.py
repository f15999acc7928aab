"""Uploads and URI checks for what clients submit.

Uploads stream to disk chunk by chunk under a byte limit (a body is never held whole in memory);
the first bytes must look like a video container we decode. Submitted URIs pass the same policy as
the worker's fetcher (service.fetch) before they are accepted, so a bad one fails the request instead
of a worker later.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from api.problems import Invalid, Problem, TooLarge, UnsafeURI, UnsupportedMedia
from service.settings import Settings

# Container signatures: (offset, bytes) -> extension.
_SIGNATURES = [
    (4, b"ftyp", ".mp4"),
    (0, b"\x1aE\xdf\xa3", ".mkv"),
    (0, b"RIFF", ".avi"),
    (0, b"\x00\x00\x01\xba", ".mpg"),
    (0, b"FLV", ".flv"),
    (0, b"OggS", ".ogv"),
    (0, b"GIF87a", ".gif"),
    (0, b"GIF89a", ".gif"),
]
MEDIA_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-matroska",
    "video/x-msvideo",
    "video/avi",
    "video/mpeg",
    "video/x-flv",
    "video/ogg",
    "image/gif",
    "application/octet-stream",
)


class QuotaExceeded(Problem):
    status, slug, title = 507, "insufficient-storage", "The upload storage quota is used up"


def sniff(head: bytes) -> str | None:
    for offset, magic, ext in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            if magic == b"RIFF" and head[8:12] != b"AVI ":
                continue
            return ext
    return None


def check_content_type(content_type: str | None) -> None:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base not in MEDIA_TYPES:
        raise UnsupportedMedia(
            f"Content-Type {base or '(none)'!r} is not a video; send one of {', '.join(MEDIA_TYPES)}"
        )


def quota_left(settings: Settings) -> int:
    """Bytes the stored uploads may still grow by (KEYE_API_MAX_UPLOAD_TOTAL_BYTES); 507 when none.
    Concurrent uploads may each see the same room: the quota holds to within one upload each."""
    from service.uploads import stored_bytes

    left = settings.api_max_upload_total_bytes - stored_bytes(settings)
    if left <= 0:
        raise QuotaExceeded(
            f"stored uploads reached the quota of {settings.api_max_upload_total_bytes} bytes; "
            "retry when space is freed"
        )
    return left


async def save_stream(
    chunks: AsyncIterator[bytes], folder: Path, limit: int, declared: str | None, quota: int | None = None
) -> Path:
    """Write the body to a new file in `folder`, refusing it past `limit` bytes (413), past `quota`
    bytes (507: the storage's room, not this upload, is the problem) or when it is not a video;
    returns the file (named by a fresh uuid and the sniffed extension)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the upload declares {declared} bytes; the limit is {limit}")
    room = limit if quota is None else quota
    if declared and declared.isdigit() and int(declared) > room:
        raise QuotaExceeded(f"the upload declares {declared} bytes; the upload storage has room for {room}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{uuid.uuid4().hex}.part"
    size, head, ext = 0, b"", None
    try:
        with open(partial, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the upload is larger than the limit of {limit} bytes")
                if size > room:
                    raise QuotaExceeded(f"the upload storage has room for {room} more bytes")
                if ext is None:
                    head += chunk
                    if len(head) >= 16:
                        ext = sniff(head)
                        if ext is None:
                            raise UnsupportedMedia(
                                "the upload is not a video container we read "
                                "(MP4/MOV, Matroska/WebM, AVI, MPEG-PS, FLV, Ogg, animated GIF)"
                            )
                out.write(chunk)
        if size == 0:
            raise Invalid("the upload is empty")
        if ext is None:
            raise UnsupportedMedia(f"the upload is too short ({size} bytes) to be a video")
        target = folder / f"{uuid.uuid4().hex}{ext}"
        os.replace(partial, target)
        return target
    finally:
        partial.unlink(missing_ok=True)


def check_uri(uri: str, settings: Settings) -> None:
    """Refuse a submitted URI the fetcher would refuse (422 with the reason)."""
    from service.fetch import FetchError, UnsafeURIError, check_address, local_path, resolve_checked

    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    try:
        if scheme == "file":
            local_path(uri, settings)
        elif scheme in ("http", "https"):
            if parts.username or parts.password:
                raise UnsafeURIError("credentials in URIs are not accepted")
            host = parts.hostname
            if not host:
                raise UnsafeURIError(f"no host in {uri!r}")
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                resolve_checked(
                    host,
                    parts.port or (443 if scheme == "https" else 80),
                    settings.allow_private_addresses,
                    settings.allow_loopback_addresses,
                )
            else:
                reason = check_address(ip, settings.allow_private_addresses, settings.allow_loopback_addresses)
                if reason:
                    raise UnsafeURIError(reason)
        else:
            raise UnsafeURIError(f"unsupported URI scheme {scheme!r}; use file://, http:// or https://")
    except UnsafeURIError as e:
        raise UnsafeURI(str(e)) from None
    except FetchError as e:
        raise Invalid(f"the URI cannot be fetched: {e}") from None
    except ValueError as e:  # a malformed port or host
        raise Invalid(f"the URI is malformed: {e}") from None
