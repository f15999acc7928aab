"""Safe fetching against a real HTTP server on loopback and real files."""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keye.fetch import FetchError, FetchTooLargeError, UnsafeURIError, check_address, fetched
from keye.settings import Settings

BODY = b"0123456789" * 1000


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/clip.mp4":
            self._send(200, BODY)
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the limit must hold while streaming
            for _ in range(100):
                self.wfile.write(BODY)
        elif self.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            time.sleep(3)
            self.wfile.write(BODY)
        elif self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect-to/"):].replace("|", "/"))
            self.end_headers()
        elif self.path == "/host":
            self._send(200, self.headers["Host"].encode())
        elif self.path == "/gone":
            self._send(404, b"no")
        else:
            self._send(503, b"busy")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> str:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def settings(tmp_path: Path, **kw) -> Settings:
    return Settings(file_roots=[tmp_path / "root"], data_dir=tmp_path / "data", **kw)


def test_loopback_is_refused_by_default(server: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeURIError, match="private or loopback"):
        with fetched(f"{server}/clip.mp4", settings(tmp_path)):
            pass


def test_download_when_private_addresses_are_allowed(server: str, tmp_path: Path) -> None:
    with fetched(f"{server}/clip.mp4", settings(tmp_path, allow_private_addresses=True)) as path:
        assert path.read_bytes() == BODY
        kept = path
    assert not kept.exists()  # the download is removed afterwards
    # the connection goes to the checked address but the server still sees the original Host
    host = server.replace("127.0.0.1", "localhost")
    with fetched(f"{host}/host", settings(tmp_path, allow_private_addresses=True)) as path:
        assert path.read_bytes() == host.removeprefix("http://").encode()


def test_each_redirect_is_checked_again(server: str, tmp_path: Path) -> None:
    s = settings(tmp_path, allow_private_addresses=True)
    with fetched(f"{server}/redirect-to/|clip.mp4", s) as path:
        assert path.read_bytes() == BODY
    # cloud metadata (link-local) is never allowed, even after a redirect from an allowed host
    with pytest.raises(UnsafeURIError, match="169.254.169.254"):
        with fetched(f"{server}/redirect-to/http:||169.254.169.254|latest|meta-data", s):
            pass
    with pytest.raises(UnsafeURIError, match="unsupported scheme"):
        with fetched(f"{server}/redirect-to/file:|||etc|passwd", s):
            pass


def test_size_and_time_limits(server: str, tmp_path: Path) -> None:
    with pytest.raises(FetchTooLargeError, match="declares"):
        with fetched(f"{server}/clip.mp4", settings(tmp_path, allow_private_addresses=True, max_fetch_bytes=100)):
            pass
    with pytest.raises(FetchTooLargeError, match="more than"):
        with fetched(f"{server}/big", settings(tmp_path, allow_private_addresses=True, max_fetch_bytes=50_000)):
            pass
    with pytest.raises(FetchError, match="timed out") as e:
        with fetched(f"{server}/slow", settings(tmp_path, allow_private_addresses=True, fetch_timeout_s=0.5)):
            pass
    assert not e.value.permanent


def test_http_errors_are_classified(server: str, tmp_path: Path) -> None:
    s = settings(tmp_path, allow_private_addresses=True)
    with pytest.raises(FetchError, match="HTTP 404") as gone:
        with fetched(f"{server}/gone", s):
            pass
    assert gone.value.permanent
    with pytest.raises(FetchError, match="HTTP 503") as busy:
        with fetched(f"{server}/busy", s):
            pass
    assert not busy.value.permanent


def test_file_uris_stay_under_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    s = settings(tmp_path)
    with fetched((root / "a.mp4").as_uri(), s) as path:
        assert path == (root / "a.mp4").resolve()
    for uri in [(tmp_path / "secret.mp4").as_uri(), (root / "link.mp4").as_uri(),
                f"file://{root}/../secret.mp4"]:
        with pytest.raises(UnsafeURIError, match="outside the allowed file roots"):
            with fetched(uri, s):
                pass
    with pytest.raises(UnsafeURIError, match="remote host"):
        with fetched("file://evil.example/etc/passwd", s):
            pass
    with pytest.raises(FetchError, match="no such file") as missing:
        with fetched((root / "nope.mp4").as_uri(), s):
            pass
    assert missing.value.permanent
    with pytest.raises(UnsafeURIError, match="unsupported URI scheme"):
        with fetched("gopher://x/y", s):
            pass


@pytest.mark.parametrize("ip, private_ok, allowed", [
    ("8.8.8.8", False, True), ("10.1.2.3", False, False), ("10.1.2.3", True, True), ("127.0.0.1", True, True),
    ("169.254.169.254", True, False), ("::ffff:127.0.0.1", False, False), ("0.0.0.0", True, False),
    ("fd00::1", False, False), ("2606:4700::1111", False, True), ("224.0.0.1", True, False),
])
def test_address_policy(ip: str, private_ok: bool, allowed: bool) -> None:
    assert (check_address(ipaddress.ip_address(ip), private_ok) is None) == allowed
