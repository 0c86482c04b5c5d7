"""`python -m worker.reload`: move every running worker process to the current model.

It bumps a generation counter in Redis; each model-owning process (every prefork child, every
solo GPU worker) notices it within one heartbeat, loads `settings.model_uri` again (so
`models:/catdog@champion` resolves to the current champion), warms it up and only then swaps
it in. A failed load keeps the old model and reports the error in the heartbeat. The command
waits for every live process to report the new generation and prints what each one serves.

Why not a Celery control command: those run in the worker's main process, while the model
lives in its pool children; Redis reaches every process, including children forked later.
"""

import argparse
import sys
import time

from common.settings import get_settings
from common.store import model_generation, workers
from common.store.ops import Store
from common.wire import Heartbeat


def wait_for_generation(
    store: Store, generation: int, timeout_s: float
) -> tuple[list[Heartbeat], list[Heartbeat]]:
    """(reached, behind): the live processes that did and did not report `generation`."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = store(workers.live())
        behind = [hb for hb in live if hb.generation < generation]
        if not behind or time.monotonic() > deadline:
            return [hb for hb in live if hb.generation >= generation], behind
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    args = parser.parse_args(argv)
    store = Store.from_url(get_settings().redis_url)
    generation = store(model_generation.bump())
    # A process needs a heartbeat to notice, then the load itself: wait for both.
    reached, behind = wait_for_generation(store, generation, args.timeout)
    failed = [hb for hb in reached if hb.error]
    for hb in reached:
        version = hb.model.version if hb.model else None
        outcome = f"kept {version}: {hb.error}" if hb.error else f"now {version}"
        print(f"{hb.worker_id}: {outcome}")
    for hb in behind:
        print(f"{hb.worker_id}: no answer within {args.timeout:.0f} s")
    if not reached and not behind:
        print("no live worker", file=sys.stderr)
    return 1 if failed or behind or not reached else 0


if __name__ == "__main__":
    sys.exit(main())
