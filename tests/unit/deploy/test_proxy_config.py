"""deploy/nginx/nginx.conf served by a real nginx in front of a stub upstream: over HTTPS,
requests reach the gateway with the forwarding headers, Flower and Grafana keep their
sub-paths, metrics stay private, and an upload over the size limit is refused by the proxy
itself; plain HTTP only redirects to HTTPS and serves the ACME challenge folder; the
container's health-check port reaches the gateway's /livez.

Only what cannot exist outside compose is changed in the test copy: the listen addresses
(free loopback ports for 8080, 8443 and 8081), the upstream host names (compose DNS), the
certificate (a throwaway self-signed one), the ACME webroot and the /tmp/ paths (a test's
own folder). resolver.conf is the real one, next to the copied nginx.conf.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
NGINX_DIR = ROOT / "deploy" / "nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


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


@dataclass
class Proxy:
    https: str  # the published 443 (8443 in the container)
    http: str  # the published 80 (8080)
    health: str  # the container-only health-check port (8081)
    acme: Path  # the ACME challenge webroot
    tls: ssl.SSLContext  # trusts the proxy's throwaway certificate

    def get(self, url: str, **kwargs: object) -> httpx.Response:
        return httpx.get(url, verify=self.tls, follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def substitute(conf: str, old: str, new: str) -> str:
    assert old in conf, f"deploy/nginx/nginx.conf has no {old!r} any more: update this test"
    return conf.replace(old, new)


def wait_for_port(port: int, nginx: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert nginx.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    assert Path(NGINX).exists(), "nginx is missing: run `make setup` (scripts/system-deps.sh)"
    assert Path(OPENSSL).exists(), "openssl is missing: run `make setup`"
    tmp = tmp_path_factory.mktemp("nginx")
    (tmp / "run").mkdir()
    (tmp / "tls").mkdir()
    (tmp / "acme").mkdir()
    subprocess.run(
        [
            OPENSSL,
            *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(tmp / "tls" / "privkey.pem")),
            *("-out", str(tmp / "tls" / "fullchain.pem")),
        ],
        check=True,
        capture_output=True,
    )
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, args=(0.05,), daemon=True).start()
    backend = f"http://127.0.0.1:{upstream.server_address[1]}"
    http_port, https_port, health_port = free_port(), free_port(), free_port()

    conf = (NGINX_DIR / "nginx.conf").read_text()
    conf = substitute(conf, "listen 8080 ", f"listen 127.0.0.1:{http_port} ")
    conf = substitute(conf, "listen 8443 ssl ", f"listen 127.0.0.1:{https_port} ssl ")
    conf = substitute(conf, "listen 127.0.0.1:8081;", f"listen 127.0.0.1:{health_port};")
    conf = substitute(conf, " /tmp/", f" {tmp / 'run'}/")
    conf = substitute(conf, "/etc/nginx/tls/", f"{tmp / 'tls'}/")
    conf = substitute(conf, "root /var/www/acme;", f"root {tmp / 'acme'};")
    for service in ("gateway:8000", "flower:5555", "grafana:3000"):
        conf = substitute(conf, f"http://{service}", backend)
    (tmp / "nginx.conf").write_text(conf)
    # `include resolver.conf;` is relative to the folder of nginx.conf, as in the container.
    shutil.copy(NGINX_DIR / "resolver.conf", tmp / "resolver.conf")

    log = tmp / "nginx.log"
    argv = [NGINX, "-e", str(log), "-p", f"{tmp}/", "-c", str(tmp / "nginx.conf")]
    # Started by root, nginx would run its workers as `nobody`, who cannot enter pytest's
    # folders (the container runs master and workers as one unprivileged user).
    directives = "daemon off;" + (" user root root;" if os.geteuid() == 0 else "")
    with log.open("ab") as out:
        nginx = subprocess.Popen([*argv, "-g", directives], stdout=out, stderr=out)
    for port in (http_port, https_port, health_port):
        wait_for_port(port, nginx, log)
    context = ssl.create_default_context(cafile=str(tmp / "tls" / "fullchain.pem"))
    yield Proxy(
        https=f"https://127.0.0.1:{https_port}",
        http=f"http://127.0.0.1:{http_port}",
        health=f"http://127.0.0.1:{health_port}",
        acme=tmp / "acme",
        tls=context,
    )
    nginx.terminate()
    nginx.wait(10)
    upstream.shutdown()
    upstream.server_close()


def test_requests_reach_the_gateway_with_forwarding_headers(proxy: Proxy) -> None:
    response = proxy.get(f"{proxy.https}/jobs/abc?offset=2", headers={"Host": "catdog.example"})
    assert response.status_code == 200
    seen = response.json()
    assert seen["path"] == "/jobs/abc?offset=2"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["host"] == "catdog.example"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert len(headers["x-request-id"]) == 32
    assert "nginx/" not in response.headers.get("server", "")  # server_tokens off


@pytest.mark.parametrize("path", ["/flower/", "/flower/api/workers", "/grafana/api/health"])
def test_flower_and_grafana_keep_their_sub_paths(proxy: Proxy, path: str) -> None:
    response = proxy.get(f"{proxy.https}{path}")
    assert response.status_code == 200
    assert response.json()["path"] == path


@pytest.mark.parametrize("path", ["/metrics", "/flower/metrics"])
def test_metrics_are_not_served_publicly(proxy: Proxy, path: str) -> None:
    assert proxy.get(f"{proxy.https}{path}").status_code == 404


def test_an_upload_over_the_limit_is_refused_by_the_proxy(proxy: Proxy) -> None:
    # Only the headers are sent: nginx answers 413 from Content-Length alone.
    port = int(proxy.https.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        proxy.tls.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {600 * 1024 * 1024}\r\n\r\n".encode()
        )
        status_line = sock.recv(1024).split(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("path", ["/flower/", "/", "/jobs/abc?offset=2", "/grafana/login"])
def test_plain_http_only_redirects_to_https(proxy: Proxy, path: str) -> None:
    # No login page and no API key ever crosses port 80: nothing reaches an upstream there.
    response = proxy.get(f"{proxy.http}{path}", headers={"Host": "catdog.example"})
    assert response.status_code == 301
    assert response.headers["location"] == f"https://catdog.example{path}"


def test_plain_http_serves_the_acme_challenge_from_the_webroot(proxy: Proxy) -> None:
    # Let's Encrypt's HTTP challenge must be answered on port 80, not redirected.
    missing = proxy.get(f"{proxy.http}/.well-known/acme-challenge/probe")
    assert missing.status_code == 404
    assert "location" not in missing.headers
    token = proxy.acme / ".well-known" / "acme-challenge" / "token-1"
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("token-1.key-authorization")
    found = proxy.get(f"{proxy.http}/.well-known/acme-challenge/token-1")
    assert (found.status_code, found.text) == (200, "token-1.key-authorization")


def test_the_health_check_port_reaches_the_gateways_livez(proxy: Proxy) -> None:
    response = proxy.get(f"{proxy.health}/livez")
    assert response.status_code == 200
    assert response.json()["path"] == "/livez"
    assert proxy.get(f"{proxy.health}/predict").status_code == 404  # /livez only
