"""`python -m worker.healthcheck`: exit 0 when this worker answers a Celery ping, else 1.

Pings only this worker (by node name, `celery@<hostname>` unless `--hostname` says
otherwise). With `--require-model`, its processes must also report a loaded model in their
Redis heartbeat. Used as the worker container's health check.
"""

import argparse
import socket
import sys

from common.settings import get_settings
from common.store import workers
from common.store.ops import Store


def default_node_name() -> str:
    return f"celery@{socket.gethostname()}"


def ping(node: str, timeout_s: float) -> bool:
    from worker.celery_app import app

    replies = app.control.ping(destination=[node], timeout=timeout_s) or []
    return any(node in reply for reply in replies)


def model_loaded(node: str) -> bool:
    store = Store.from_url(get_settings().redis_url)
    return any(hb.hostname == node and hb.ready for hb in store(workers.live()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostname", default=default_node_name(), help="worker node name")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
    parser.add_argument("--require-model", action="store_true")
    args = parser.parse_args(argv)
    try:
        healthy = ping(args.hostname, args.timeout) and (
            not args.require_model or model_loaded(args.hostname)
        )
    except Exception as exc:  # broker down, DNS, ...: unhealthy, with the reason
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    print("healthy" if healthy else f"unhealthy: {args.hostname} did not answer", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
