"""What the running container stack must show an operator, checked from outside:

    python -m tests.containers.checks DEPLOY_ROOT HTTPS_URL

- TLS: port 80 redirects to HTTPS (Flower's login is never offered in clear text) but still
  serves the ACME challenge folder; Flower over HTTPS asks for its password.
- Hardening, per container: a read-only root file system, no effective capabilities, no
  privilege gain, a non-root user (MLflow excepted, as in its official image).
- Secrets: each container holds only the secrets its service uses, and none appears in
  any process's arguments.
Prints one line per check and exits 1 when any fails."""

import json
import subprocess
import sys
from pathlib import Path

import httpx

# The secrets of the env file each service may hold; every other secret must be absent.
SECRETS_USED = {
    "redis": {"REDIS_PASSWORD"},
    "gateway": {"REDIS_PASSWORD"},
    "worker": {"REDIS_PASSWORD", "CATDOG_CALLBACK_SECRET"},
    "worker-realtime": {"REDIS_PASSWORD", "CATDOG_CALLBACK_SECRET"},
    "flower": {"REDIS_PASSWORD", "CATDOG_FLOWER_BASIC_AUTH"},
    "mlflow": set(),
    "prometheus": set(),
    "proxy": set(),
}
ROOT_ALLOWED = {"mlflow"}

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def env_file(root: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in (root / ".env").read_text().splitlines())
    return {k: v for k, v in (p for p in pairs if len(p) == 2) if not k.startswith("#")}


def docker(*args: str) -> str:
    """The engine's CLI (the harness puts a `docker` for podman on PATH where needed)."""
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def containers() -> list[dict]:
    ids = docker("ps", "-q", "--filter", "label=com.docker.compose.project=catdog").split()
    return json.loads(docker("inspect", *ids))


def check_tls(url: str, env: dict[str, str]) -> None:
    http = url.replace("https://", "http://").replace(env["HTTPS_PORT"], env["HTTP_PORT"])
    answer = httpx.get(f"{http}/flower/", follow_redirects=False)
    check(
        answer.status_code == 301 and answer.headers["location"].startswith("https://"),
        f"GET {http}/flower/ -> {answer.status_code} to {answer.headers.get('location')}",
    )
    answer = httpx.get(f"{http}/.well-known/acme-challenge/probe", follow_redirects=False)
    check(
        answer.status_code == 404, f"ACME challenge folder served on port 80 ({answer.status_code})"
    )
    ca = str(Path(env["TLS_DIR"]) / "fullchain.pem")
    answer = httpx.get(f"{url}/flower/", verify=ca)
    check(
        answer.status_code == 401, f"GET {url}/flower/ without a password -> {answer.status_code}"
    )
    user, password = env["CATDOG_FLOWER_BASIC_AUTH"].split(":", 1)
    answer = httpx.get(f"{url}/flower/", verify=ca, auth=(user, password))
    check(answer.status_code == 200, f"GET {url}/flower/ with the password -> {answer.status_code}")


def check_container(info: dict, env: dict[str, str]) -> None:
    service = info["Config"]["Labels"]["com.docker.compose.service"]
    name = info["Name"].lstrip("/")
    host = info["HostConfig"]
    check(bool(host.get("ReadonlyRootfs")), f"{name}: read-only root file system")
    effective = docker("exec", name, "grep", "^CapEff:", "/proc/1/status").split()[-1]
    check(int(effective, 16) == 0, f"{name}: no effective capabilities (CapEff {effective})")
    check(
        any("no-new-privileges" in opt for opt in host.get("SecurityOpt") or []),
        f"{name}: no-new-privileges",
    )
    user = docker("exec", name, "id", "-u").strip()
    check(user != "0" or service in ROOT_ALLOWED, f"{name}: runs as uid {user}")
    held = {
        secret
        for secret in ("REDIS_PASSWORD", "CATDOG_CALLBACK_SECRET", "CATDOG_FLOWER_BASIC_AUTH")
        if any(env[secret].split(":")[-1] in item for item in info["Config"]["Env"] or [])
    }
    allowed = SECRETS_USED.get(service, set())
    check(held <= allowed, f"{name}: holds only the secrets it uses ({sorted(held) or 'none'})")
    argv = docker("exec", name, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    leaked = [s for s in held if env[s].split(":")[-1] in argv]
    check(not leaked, f"{name}: no secret in process arguments")


def main(root: Path, url: str) -> int:
    env = env_file(root)
    check_tls(url, env)
    for info in containers():
        check_container(info, env)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2]))
