"""Steady /predict traffic through the proxy while a deploy runs, to count what a caller
would have seen fail:

    python -m tests.containers.traffic URL API_KEY PHOTO CA_FILE OUT.json

Sends one request at a time, at most RATE a second (below an API key's rate limit, so a 429
is never the caller's own doing), until SIGTERM; then writes the count of requests, of
failures (any answer but 200, or no answer) by kind, and the longest stretch of failures."""

import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

RATE = 8.0  # requests a second; the key's limit is 20
running = True


def stop(*_: object) -> None:
    global running
    running = False


def main(url: str, api_key: str, photo: Path, ca_file: str, out: Path) -> None:
    signal.signal(signal.SIGTERM, stop)
    data = photo.read_bytes()
    failures: Counter[str] = Counter()
    total = 0
    failing_since: float | None = None
    longest = 0.0
    with httpx.Client(verify=ca_file, timeout=30, headers={"X-API-Key": api_key}) as client:
        while running:
            total += 1
            now = time.monotonic()
            next_at = now + 1 / RATE
            try:
                answer = client.post(
                    f"{url}/predict", files={"file": ("p.jpg", data, "image/jpeg")}
                )
                kind = None if answer.status_code == 200 else f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            if kind is None:
                if failing_since is not None:
                    longest = max(longest, now - failing_since)
                failing_since = None
            else:
                failures[kind] += 1
                failing_since = now if failing_since is None else failing_since
            time.sleep(max(0.0, next_at - time.monotonic()))
    if failing_since is not None:
        longest = max(longest, time.monotonic() - failing_since)
    summary = {
        "requests": total,
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "longest_failing_s": round(longest, 2),
    }
    out.write_text(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], Path(sys.argv[5]))
