"""Safe fetching of video URIs (no path escapes, no server-side request forgery).

- `file://` paths must resolve (symlinks followed) inside one of `settings.file_roots`.
- `http(s)://` downloads stream to a temporary file under size and wall-time limits. The host is
  resolved once, every address is checked, and the connection goes to the checked address (the
  Host header and TLS SNI keep the name), so DNS rebinding cannot swap in another target.
  Redirects are followed by hand (at most 5) and each hop is checked again.
- Private and loopback addresses are refused unless `allow_private_addresses`; link-local
  (cloud metadata), multicast, unspecified and reserved addresses are refused always.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from keye.settings import Settings

MAX_REDIRECTS = 5


class FetchError(Exception):
    """A video could not be fetched. `permanent` says whether retrying can help."""

    permanent = True

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent


class UnsafeURIError(FetchError):
    """The URI is refused by policy (outside the file roots, a private address, a bad scheme)."""


class FetchTooLargeError(FetchError):
    """The content is larger than `max_fetch_bytes`."""


@contextmanager
def fetched(uri: str, settings: Settings) -> Iterator[Path]:
    """A local path holding the content of `uri`; downloaded copies are deleted on exit."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "file":
        yield local_path(uri, settings)
    elif scheme in ("http", "https"):
        with tempfile.TemporaryDirectory(prefix="keye-fetch-") as tmp:
            yield download(uri, settings, Path(tmp))
    else:
        raise UnsafeURIError(f"unsupported URI scheme {scheme!r} in {uri!r}; use file://, http:// or https://")


def local_path(uri: str, settings: Settings) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise UnsafeURIError(f"file URI {uri!r} names a remote host; only local files are read")
    raw = Path(unquote(parts.path))
    if not raw.is_absolute():
        raise UnsafeURIError(f"file URI {uri!r} must hold an absolute path")
    try:
        path = raw.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise FetchError(f"no such file: {raw}") from None
    roots = [Path(r).resolve() for r in settings.file_roots]
    if not any(path.is_relative_to(root) for root in roots):
        raise UnsafeURIError(f"{path} is outside the allowed file roots {[str(r) for r in roots]}")
    if not path.is_file():
        raise FetchError(f"{path} is not a regular file")
    if path.stat().st_size > settings.max_fetch_bytes:
        raise FetchTooLargeError(f"{path} is {path.stat().st_size} bytes; the limit is {settings.max_fetch_bytes}")
    return path


def check_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why this address is refused, or None when it may be contacted."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return f"{ip} is a link-local, multicast, unspecified or reserved address"
    if ip.is_global:
        return None
    if allow_private and (ip.is_private or ip.is_loopback):
        return None
    return f"{ip} is a private or loopback address (set KEYE_ALLOW_PRIVATE_ADDRESSES=true to allow)"


def resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """Resolve `host` and return an address to connect to; refuses if ANY address is unsafe."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"cannot resolve {host!r}: {e}", permanent=False) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for ip in addresses:
        reason = check_address(ip, allow_private)
        if reason is not None:
            raise UnsafeURIError(f"refusing {host!r}: {reason}")
    return str(addresses[0])


def download(uri: str, settings: Settings, folder: Path) -> Path:
    import httpx

    deadline = time.monotonic() + settings.fetch_timeout_s
    url = uri
    with httpx.Client(follow_redirects=False, trust_env=False,
                      timeout=httpx.Timeout(settings.fetch_timeout_s)) as client:
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https"):
                raise UnsafeURIError(f"redirect to unsupported scheme in {url!r}")
            if parts.username or parts.password:
                raise UnsafeURIError(f"credentials in URIs are not accepted: {uri!r}")
            host = parts.hostname
            if not host:
                raise UnsafeURIError(f"no host in {url!r}")
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            ip = resolve_checked(host, port, settings.allow_private_addresses)
            pinned = httpx.URL(url).copy_with(host=ip)
            headers = {"Host": parts.netloc, "User-Agent": "keye-fetch/1"}
            extensions = {"sni_hostname": host} if parts.scheme.lower() == "https" else {}
            try:
                with client.stream("GET", pinned, headers=headers, extensions=extensions) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise FetchError(f"{url} answered {resp.status_code} without a Location")
                        url = urljoin(url, location)
                        continue
                    if resp.status_code >= 400:
                        transient = resp.status_code >= 500 or resp.status_code in (408, 429)
                        raise FetchError(f"{url} answered HTTP {resp.status_code}", permanent=not transient)
                    return _save(resp, url, settings, folder, deadline)
            except httpx.TimeoutException:
                raise FetchError(f"fetching {url} timed out after {settings.fetch_timeout_s}s", permanent=False) from None
            except httpx.TransportError as e:
                raise FetchError(f"fetching {url} failed: {e}", permanent=False) from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects starting at {uri}")


def _save(resp, url: str, settings: Settings, folder: Path, deadline: float) -> Path:
    limit = settings.max_fetch_bytes
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FetchTooLargeError(f"{url} declares {declared} bytes; the limit is {limit}")
    name = Path(unquote(urlsplit(url).path)).name or "video"
    target = folder / ("download-" + "".join(c for c in name if c.isalnum() or c in "._-")[-100:])
    size = 0
    with open(target, "wb") as out:
        for chunk in resp.iter_bytes(1 << 16):
            size += len(chunk)
            if size > limit:
                raise FetchTooLargeError(f"{url} sent more than {limit} bytes")
            if time.monotonic() > deadline:
                raise FetchError(f"fetching {url} took longer than {settings.fetch_timeout_s}s", permanent=False)
            out.write(chunk)
    return target


__all__ = ["FetchError", "UnsafeURIError", "FetchTooLargeError", "fetched", "local_path", "download",
           "check_address", "resolve_checked"]
