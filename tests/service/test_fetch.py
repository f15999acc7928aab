"""Safe fetching against a real HTTP server on loopback and real files."""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from service.fetch import FetchError, FetchTooLargeError, UnsafeURIError, check_address, fetched
from service.settings import Settings

BODY = b"0123456789" * 1000
TRICKLE_BYTES = 40


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
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
        elif self.path in ("/trickle", "/trickle-headers"):
            self._trickle()
        elif self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect-to/") :].replace("|", "/"))
            self.end_headers()
        elif self.path == "/host":
            self._send(200, self.headers["Host"].encode())
        elif self.path == "/gone":
            self._send(404, b"no")
        else:
            self._send(503, b"busy")

    def _trickle(self) -> None:
        """One byte every 0.2 s (of the headers or of the body): each read is quick, the whole is slow."""
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {TRICKLE_BYTES}\r\n\r\n".encode()
        if self.path == "/trickle":
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        try:
            for i in range(len(head) + TRICKLE_BYTES):
                self.wfile.write(head[i : i + 1] or b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the client gave up, as it should
            pass
        self.close_connection = True

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
    with pytest.raises(UnsafeURIError, match="loopback address"):
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
    other_origin = server.replace("127.0.0.1", "localhost").replace("http://", "http:||")
    with fetched(f"{server}/redirect-to/{other_origin}|host", s) as path:
        assert path.read_bytes() == server.replace("http://127.0.0.1", "localhost").encode()
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
    for uri in [(tmp_path / "secret.mp4").as_uri(), (root / "link.mp4").as_uri(), f"file://{root}/../secret.mp4"]:
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


@pytest.mark.parametrize(
    "ip, private_ok, allowed",
    [
        ("8.8.8.8", False, True),
        ("10.1.2.3", False, False),
        ("10.1.2.3", True, True),
        ("127.0.0.1", True, True),
        ("169.254.169.254", True, False),
        ("::ffff:127.0.0.1", False, False),
        ("0.0.0.0", True, False),
        ("fd00::1", False, False),
        ("2606:4700::1111", False, True),
        ("224.0.0.1", True, False),
    ],
)
def test_address_policy(ip: str, private_ok: bool, allowed: bool) -> None:
    assert (check_address(ipaddress.ip_address(ip), private_ok) is None) == allowed


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_trickling_source_meets_the_total_deadline(server: str, tmp_path: Path, path: str) -> None:
    # Every read returns within 0.2 s, far under the per-read timeout; only the wall clock stops it.
    s = settings(tmp_path, allow_private_addresses=True, fetch_timeout_s=1.0, fetch_read_timeout_s=5.0)
    start = time.monotonic()
    with pytest.raises(FetchError, match="timed out") as e:
        with fetched(f"{server}{path}", s):
            pass
    assert time.monotonic() - start < 2.5  # the trickle itself lasts 8 s or more
    assert not e.value.permanent


def test_file_answers_are_identical_and_path_free(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "folder").mkdir(parents=True)
    (tmp_path / "secret.mp4").write_bytes(b"s")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    s = settings(tmp_path)
    answers = set()
    for target in [
        tmp_path / "secret.mp4",
        tmp_path / "missing.mp4",
        root / "missing.mp4",
        root / "folder",
        root / "loop.mp4",
        Path("/etc/passwd"),
        Path("/nonexistent/x.mp4"),
    ]:
        with pytest.raises(UnsafeURIError) as e:
            with fetched(target.as_uri(), s):
                pass
        answers.add((type(e.value), str(e.value), e.value.permanent))
    assert len(answers) == 1, answers  # no answer tells an existing file from a missing one
    ((_, message, _),) = answers
    for leak in (str(tmp_path), str(Path.cwd()), "/etc", "/nonexistent", "secret"):
        assert leak not in message


def test_the_upload_folder_is_always_an_allowed_root(tmp_path: Path) -> None:
    s = settings(tmp_path)  # file_roots names only tmp_path/root
    clip = s.upload_dir / "vid-1" / "a.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"x")
    with fetched(clip.as_uri(), s) as path:
        assert path == clip
    with pytest.raises(UnsafeURIError):  # a sibling of the upload folder is not
        with fetched((tmp_path / "data" / "keye.db").as_uri(), s):
            pass


@pytest.mark.parametrize(
    "ip, private_ok, loopback_ok, allowed",
    [
        ("::1", True, None, True),
        ("::1", False, None, False),
        ("127.0.0.1", True, False, False),
        ("10.0.0.1", True, False, True),
        ("127.0.0.1", False, True, True),
        ("10.0.0.1", False, True, False),
        ("100.64.0.1", False, None, False),
        ("100.64.0.1", True, None, True),  # CGNAT is private
        ("198.18.0.1", True, None, False),
        ("192.0.2.1", True, None, False),
        ("2001:db8::1", True, None, False),
        ("0.1.2.3", True, None, False),
        ("255.255.255.255", True, None, False),
        ("fe80::1", True, None, False),
        ("ff02::1", True, None, False),
        ("fc00::1", False, None, False),
        ("fec0::1", True, None, False),
        ("4000::1", True, None, False),
        ("::", True, None, False),
        # IPv4 wrapped in IPv6 is judged by its IPv4 address
        ("::ffff:10.0.0.1", False, None, False),
        ("::ffff:8.8.8.8", False, None, True),
        ("::127.0.0.1", False, None, False),
        ("::ffff:0:127.0.0.1", False, None, False),
        ("64:ff9b::127.0.0.1", False, None, False),
        ("64:ff9b::8.8.8.8", False, None, True),
        ("2002:7f00:1::", False, None, False),
        ("2002:a9fe:a9fe::", True, None, False),
        ("2002:808:808::", False, None, True),
        ("2001:0:4136:e378:8000:63bf:80f7:f7f7", False, None, False),  # Teredo to client 127.8.8.8
    ],
)
def test_address_policy_as_explicit_networks(
    ip: str, private_ok: bool, loopback_ok: bool | None, allowed: bool
) -> None:
    assert (check_address(ipaddress.ip_address(ip), private_ok, loopback_ok) is None) == allowed
