"""Safe fetching of video URIs (no path escapes, no server-side request forgery).

- `file://` paths must resolve (symlinks followed) to a regular file inside
  `settings.allowed_file_roots` (the configured roots and the upload folder). A missing file and a
  forbidden one get the same path-free answer (no existence oracle); the details go to the log.
- `http(s)://` downloads stream to a temporary file under a size limit and a wall-clock deadline
  that every network read (headers included) is held to, however slowly the source sends. The
  host is resolved once, every address is checked (service.addresses), and the connection goes to the
  checked address (the Host header and TLS SNI keep the name), so DNS rebinding cannot swap in
  another target. Redirects are followed by hand (at most 5) and each hop is checked again.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, cast
from urllib.parse import unquote, urljoin, urlsplit

from service.addresses import check_address
from service.settings import Settings

if TYPE_CHECKING:
    import httpcore

log = logging.getLogger("keye.fetch")
MAX_REDIRECTS = 5
UNAVAILABLE_FILE = "no such file is readable: it is missing, not a regular file, or outside the allowed file roots"


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
        raise UnsafeURIError("file URIs must not name a remote host; only local files are read")
    raw = Path(unquote(parts.path))
    if not raw.is_absolute():
        raise UnsafeURIError("file URIs must hold an absolute path")
    try:
        path = raw.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        _unavailable(raw, f"cannot be resolved ({e})")
    if not any(path.is_relative_to(root) for root in settings.allowed_file_roots):
        _unavailable(path, "is outside the allowed file roots")
    if not path.is_file():
        _unavailable(path, "does not exist or is not a regular file")
    size = path.stat().st_size
    if size > settings.max_fetch_bytes:
        raise FetchTooLargeError(f"the file is {size} bytes; the limit is {settings.max_fetch_bytes}")
    return path


def _unavailable(path: Path, why: str) -> NoReturn:
    log.warning("file %s %s", path, why)
    raise UnsafeURIError(UNAVAILABLE_FILE)


def resolve_checked(host: str, port: int, allow_private: bool, allow_loopback: bool | None = None) -> str:
    """Resolve `host` and return an address to connect to; refuses if ANY address is unsafe."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"cannot resolve {host!r}: {e}", permanent=False) from None
    # an IPv4/IPv6 sockaddr starts with the address as text (typeshed allows an int for other families)
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for ip in addresses:
        reason = check_address(ip, allow_private, allow_loopback)
        if reason is not None:
            raise UnsafeURIError(reason if host == str(ip) else f"refusing {host!r}: {reason}")
    return str(addresses[0])


class _DeadlineBackend:
    """httpcore's sync network backend with every connect, read and write bounded by one wall-clock
    deadline (and each read by `read_timeout_s`), so a source trickling bytes cannot hold us."""

    def __init__(self, deadline: float, read_timeout_s: float) -> None:
        import httpcore

        self.inner = httpcore.SyncBackend()
        self.deadline, self.read_timeout_s = deadline, read_timeout_s

    def timeout(self) -> float:
        import httpcore

        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the download deadline passed")
        return min(left, self.read_timeout_s)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(self.inner.connect_tcp(host, port, self.timeout(), local_address, socket_options), self)

    def connect_unix_socket(self, *args, **kwargs):
        raise UnsafeURIError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream:
    def __init__(self, inner, backend: _DeadlineBackend) -> None:
        self.inner, self.backend = inner, backend

    def read(self, max_bytes: int, timeout=None) -> bytes:
        return self.inner.read(max_bytes, self.backend.timeout())

    def write(self, buffer: bytes, timeout=None) -> None:
        self.inner.write(buffer, self.backend.timeout())

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, self.backend.timeout()), self.backend)

    def get_extra_info(self, info: str):
        return self.inner.get_extra_info(info)


def download(uri: str, settings: Settings, folder: Path) -> Path:
    import httpcore
    import httpx

    backend = _DeadlineBackend(time.monotonic() + settings.fetch_timeout_s, settings.fetch_read_timeout_s)
    url = uri
    # _DeadlineBackend has NetworkBackend's methods without subclassing it (httpcore is imported lazily)
    with httpcore.ConnectionPool(network_backend=cast("httpcore.NetworkBackend", backend)) as pool:
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise UnsafeURIError(f"redirect to unsupported scheme in {url!r}")
            if parts.username or parts.password:
                raise UnsafeURIError(f"credentials in URIs are not accepted: {uri!r}")
            host = parts.hostname
            if not host:
                raise UnsafeURIError(f"no host in {url!r}")
            try:
                target = httpx.URL(url)
            except httpx.InvalidURL as e:
                raise FetchError(f"{url!r} is not a valid URL: {e}") from None
            port = parts.port or (443 if scheme == "https" else 80)
            ip = resolve_checked(host, port, settings.allow_private_addresses, settings.allow_loopback_addresses)
            pinned = httpcore.URL(scheme=scheme, host=ip, port=port, target=target.raw_path)
            headers = [(b"Host", target.netloc), (b"User-Agent", b"keye-fetch/1"), (b"Accept-Encoding", b"identity")]
            extensions = {"sni_hostname": host} if scheme == "https" else {}
            try:
                with pool.stream("GET", pinned, headers=headers, extensions=extensions) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = _header(resp, b"location")
                        if not location:
                            raise FetchError(f"{url} answered {resp.status} without a Location")
                        url = urljoin(url, location)
                        continue
                    if resp.status >= 400:
                        transient = resp.status >= 500 or resp.status in (408, 429)
                        raise FetchError(f"{url} answered HTTP {resp.status}", permanent=not transient)
                    return _save(resp, url, settings, folder)
            except httpcore.TimeoutException:
                raise FetchError(
                    f"fetching {url} timed out (the limit is {settings.fetch_timeout_s:g}s in all, "
                    f"{settings.fetch_read_timeout_s:g}s a read)",
                    permanent=False,
                ) from None
            except (httpcore.NetworkError, httpcore.ProtocolError) as e:
                raise FetchError(f"fetching {url} failed: {e}", permanent=False) from None
        raise FetchError(f"more than {MAX_REDIRECTS} redirects starting at {uri}")


def _header(resp, name: bytes) -> str | None:
    for key, value in resp.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _save(resp, url: str, settings: Settings, folder: Path) -> Path:
    limit = settings.max_fetch_bytes
    declared = _header(resp, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FetchTooLargeError(f"{url} declares {declared} bytes; the limit is {limit}")
    name = Path(unquote(urlsplit(url).path)).name or "video"
    target = folder / ("download-" + "".join(c for c in name if c.isalnum() or c in "._-")[-100:])
    size = 0
    with open(target, "wb") as out:
        for chunk in resp.iter_stream():  # each network read, held to the deadline by the backend
            size += len(chunk)
            if size > limit:
                raise FetchTooLargeError(f"{url} sent more than {limit} bytes")
            out.write(chunk)
    return target


__all__ = [
    "FetchError",
    "UnsafeURIError",
    "FetchTooLargeError",
    "fetched",
    "local_path",
    "download",
    "check_address",
    "resolve_checked",
    "UNAVAILABLE_FILE",
]
