"""Real processes for the integration tests: redis-server, Celery workers and uvicorn, each
on a free port, each in its own process group so a test can SIGKILL a whole worker.

Every process writes its output (JSON log lines) to `<log_dir>/<name>.log`. Each worker gets
its own metrics exporter port and its own fresh PROMETHEUS_MULTIPROC_DIR, as in a worker
container, so several workers never share (or fight over) either."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from common.messaging import make_celery
from common.settings import Settings
from common.store import workers
from common.store.ops import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet
            last_error = exc
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what} ({last_error})")


# Where stacks read offline (test-set) metrics unless a test names another: nothing listens,
# so no stack ever reads, or a test run writes to, the project's own mlflow.db.
NO_MLFLOW = "http://127.0.0.1:9"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str | None = None  # a worker's Prometheus exporter

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool children)."""
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def stop(self, grace_s: float = 10.0) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group
        )
    return Process(name, popen, log_path)


def start_redis(
    log_dir: Path,
    port: int | None = None,
    appendonly: bool = False,
    bind: str = "127.0.0.1",
    password: str | None = None,
) -> tuple[Process, str]:
    """A redis-server on a free port (or `port`, to restart one); with `appendonly`, it
    persists to an append-only file in `log_dir` fsynced every second, as in compose.
    `bind`: its addresses, space-separated (the URL names the first); a `password` is
    required of every client, as a Redis reachable from other hosts must."""
    port = port or free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--bind", *bind.split(), "--save", ""]
    argv += ["--appendonly", "yes" if appendonly else "no", "--daemonize", "no"]
    argv += ["--dir", str(log_dir), "--appendfsync", "everysec"]
    argv += ["--requirepass", password] if password else []
    proc = spawn(f"redis-{port}", argv, dict(os.environ), log_dir)
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}{bind.split()[0]}:{port}/0"
    client = redis.Redis.from_url(url)
    wait_until(client.ping, 10, f"redis-server on port {port}")
    client.close()
    return proc, url


def service_env(redis_url: str, model_uri: str, **settings: Any) -> dict[str, str]:
    """The environment of a gateway or worker: only our CATDOG_ settings, none inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    env.update(
        {
            "CATDOG_REDIS_URL": redis_url,
            "CATDOG_MODEL_URI": model_uri,
            "CATDOG_ENVIRONMENT": "test",
            # Stacks serve without API keys unless a test turns them on (tests/integration/
            # test_security.py); their callback receivers listen on this machine.
            "CATDOG_AUTH": "off",
            "CATDOG_CALLBACK_ALLOWED_HOSTS": '["127.0.0.1"]',
            "CATDOG_LOG_JSON": "true",
            "CATDOG_MLFLOW_TRACKING_URI": NO_MLFLOW,
            "PYTHONUNBUFFERED": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    env.update({f"CATDOG_{k.upper()}": _env_value(v) for k, v in settings.items()})
    return env


def _setting_value(text: str) -> Any:
    # The inverse of _env_value, for settings built in this process from a stack's env.
    return json.loads(text) if text[:1] in ("[", "{") else text


def _env_value(value: Any) -> str:
    # pydantic-settings reads list and dict settings as JSON.
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def start_worker(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 1,
    pool: str = "prefork",
    queues: str | None = None,
    wrapper: list[str] | None = None,
) -> Process:
    """A Celery worker; `wrapper` runs it through another command (`ip netns exec NS`)."""
    argv = [*(wrapper or []), sys.executable, "-m", "celery", "-A", "worker.celery_app:app"]
    argv += ["worker"]
    # Without `queues` (-Q) the worker consumes both queues its settings name.
    argv += ["-c", str(concurrency), "-P", pool, *(["-Q", queues] if queues else [])]
    argv += ["--hostname", f"{name}@%h", "--loglevel", "INFO", "--without-mingle"]
    argv += ["--without-gossip"]
    metrics_dir = log_dir / f"{name}-prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    port = free_port()
    env = {
        **env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "CATDOG_WORKER_METRICS_PORT": str(port),
    }
    proc = spawn(name, argv, env, log_dir)
    proc.metrics_url = f"http://127.0.0.1:{port}/metrics"
    return proc


def wait_for_worker(redis_url: str, node_prefix: str, processes: int, proc: Process) -> None:
    """Until `processes` model-owning processes of the node report a loaded model."""
    store = Store.from_url(redis_url)

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"worker {proc.name} exited:\n{proc.log()[-3000:]}")
        hbs = [hb for hb in store(workers.live()) if hb.hostname.startswith(f"{node_prefix}@")]
        return sum(hb.ready for hb in hbs) >= processes

    try:
        wait_until(ready, 90, f"worker {node_prefix} with a loaded model", every_s=0.2)
    finally:
        store.redis.close()


def start_gateway(env: dict[str, str], log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--no-access-log"]
    proc = spawn(f"gateway-{port}", argv, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(proc, f"{url}/livez", 30, "the gateway")
    return proc, url


def wait_for_http(proc: Process, url: str, timeout_s: float, what: str) -> None:
    """Wait until `url` answers 200, failing at once (with its log) if `proc` exits."""

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{what} exited:\n{proc.log()[-3000:]}")
        return httpx.get(url, timeout=1).status_code == 200

    try:
        wait_until(up, timeout_s, what, every_s=0.2)
    except TimeoutError:
        proc.kill()  # one that never came up is not left running beside the tests after it
        raise


@dataclass
class Stack:
    """One Redis, one gateway, some workers: what a test talks to."""

    url: str
    redis_url: str
    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def settings(self) -> Settings:
        """The settings this stack's processes run with."""
        given = {k.removeprefix("CATDOG_").lower(): _setting_value(v) for k, v in self.env.items()}
        return Settings(
            _env_file=None, **{k: v for k, v in given.items() if k in Settings.model_fields}
        )  # type: ignore[call-arg]

    def client(self, timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)

    def add_worker(
        self,
        name: str,
        concurrency: int = 1,
        wait: bool = True,
        pool: str = "prefork",
        queues: str | None = None,
        **settings: Any,
    ) -> Process:
        """Start a worker; with `wait`, return once each of its processes has a model (a
        threads pool has one, shared by its task threads)."""
        env = {**self.env, **{f"CATDOG_{k.upper()}": str(v) for k, v in settings.items()}}
        proc = start_worker(name, env, self.log_dir, concurrency, pool, queues)
        self.processes.append(proc)
        if wait:
            wait_for_worker(self.redis_url, name, concurrency if pool == "prefork" else 1, proc)
        return proc

    def wait_until_quiet(self, timeout_s: float = 30.0) -> None:
        """Until no task waits, runs or is scheduled anywhere in this stack: after that, a
        late write or a second callback could only come from a task that does not exist."""
        settings = self.settings()
        celery = make_celery(settings, "catdog-test-observer")
        queues = settings.realtime_queue, settings.bulk_queue

        def quiet() -> bool:
            if any(self.redis.llen(q) for q in queues):
                return False
            inspect = celery.control.inspect(timeout=1.0)
            replies = [inspect.active(), inspect.reserved(), inspect.scheduled()]
            return all(r is not None and not any(r.values()) for r in replies)

        try:
            wait_until(quiet, timeout_s, "the workers to go quiet", every_s=0.2)
        finally:
            celery.close()

    def worker_logs(self) -> str:
        return "".join(
            p.log() for p in self.processes if not p.name.startswith(("redis", "gateway"))
        )

    def gateway_log(self) -> str:
        return "".join(p.log() for p in self.processes if p.name.startswith("gateway"))

    def worker(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def start_stack(
    log_dir: Path, model_uri: str, workers: int, redis_appendonly: bool = False, **settings: Any
) -> Stack:
    """Redis (persisting as in compose with `redis_appendonly`), then the gateway, then
    `workers` single-node workers (concurrency 2 each)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = start_redis(log_dir, appendonly=redis_appendonly)
    env = service_env(redis_url, model_uri, **settings)
    stack = Stack("", redis_url, env, log_dir, [redis_proc])
    try:
        # Workers take longest to start (torch): start them first, wait for them last.
        started = [stack.add_worker(f"w{n + 1}", concurrency=2, wait=False) for n in range(workers)]
        gateway, stack.url = start_gateway(env, log_dir)
        stack.processes.append(gateway)
        for proc in started:
            wait_for_worker(redis_url, proc.name, 2, proc)
    except BaseException:
        stack.stop()
        raise
    return stack


def wait_for_job(
    client: httpx.Client, job_id: str, timeout_s: float = 60, statuses: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Poll until the job ends (or reaches one of `statuses`); return its last state."""
    final = statuses or ("succeeded", "failed", "cancelled")

    def ended() -> dict[str, Any] | None:
        response = client.get(f"/jobs/{job_id}", params={"limit": 1})
        body: dict[str, Any] = response.json()
        if "status" not in body:  # an error: the timeout names it
            raise RuntimeError(f"{response.status_code} {body}")
        return body if body["status"] in final else None

    result: dict[str, Any] = wait_until(ended, timeout_s, f"job {job_id}", every_s=0.2)
    return result


def all_items(client: httpx.Client, job_id: str, page: int = 50) -> list[dict[str, Any]]:
    """Every item of a job, following next_offset."""
    items: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        body = client.get(f"/jobs/{job_id}", params={"offset": offset, "limit": page}).json()
        items += body["results"]["items"]
        offset = body["results"]["next_offset"]
    return items


def scrape(url: str) -> list[Sample]:
    """Every sample a Prometheus endpoint (the gateway's /metrics, a worker's exporter) shows."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
