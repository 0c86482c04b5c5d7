"""deploy/nginx.conf served by a real nginx in front of a stub upstream: requests reach the
gateway with the forwarding headers, Flower and Grafana keep their sub-paths, metrics stay
private, and an upload over the size limit is refused by the proxy itself.

Only what cannot exist outside compose is changed in the test copy: the listen address, the
upstream host names (compose DNS) and the temp folders (a non-root user cannot use nginx's).
"""

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        data = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert Path(NGINX).exists(), "nginx is missing: run `make setup` (scripts/system-deps.sh)"
    tmp = tmp_path_factory.mktemp("nginx")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    backend = f"http://127.0.0.1:{upstream.server_address[1]}"
    port = free_port()
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    conf = conf.replace("listen 80 ", f"listen 127.0.0.1:{port} ")
    for service in ("gateway:8000", "flower:5555", "grafana:3000"):
        assert f"http://{service}" in conf, service
        conf = conf.replace(f"http://{service}", backend)
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {\n", "http {\n" + temp_paths, 1)
    (tmp / "nginx.conf").write_text(conf)
    log = tmp / "nginx.log"
    argv = [NGINX, "-p", f"{tmp}/", "-c", str(tmp / "nginx.conf")]
    with log.open("wb") as out:
        nginx = subprocess.Popen(
            [*argv, "-g", f"daemon off; pid {tmp / 'nginx.pid'};"], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert nginx.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield url
    nginx.terminate()
    nginx.wait(10)
    upstream.shutdown()
    upstream.server_close()


def test_requests_reach_the_gateway_with_forwarding_headers(proxy_url: str) -> None:
    response = httpx.get(f"{proxy_url}/jobs/abc?offset=2", headers={"Host": "catdog.example"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/jobs/abc?offset=2"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["host"] == "catdog.example"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert len(headers["x-request-id"]) == 32
    assert "nginx/" not in response.headers.get("server", "")  # server_tokens off


@pytest.mark.parametrize("path", ["/flower/", "/flower/api/workers", "/grafana/api/health"])
def test_flower_and_grafana_keep_their_sub_paths(proxy_url: str, path: str) -> None:
    response = httpx.get(f"{proxy_url}{path}")
    assert response.status_code == 200
    assert response.json()["path"] == path


@pytest.mark.parametrize("path", ["/metrics", "/flower/metrics"])
def test_metrics_are_not_served_publicly(proxy_url: str, path: str) -> None:
    assert httpx.get(f"{proxy_url}{path}").status_code == 404


def test_an_upload_over_the_limit_is_refused_by_the_proxy(proxy_url: str) -> None:
    # Only the headers are sent: nginx answers 413 from Content-Length alone.
    host, port = proxy_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {600 * 1024 * 1024}\r\n\r\n".encode()
        )
        status_line = sock.recv(1024).split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 413")
