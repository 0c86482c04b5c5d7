"""A few minutes of mixed traffic against a local stack, so every dashboard panel has something
to show (bench/render_dashboard.py draws them): /predict calls with feedback (the true label
from the photo's Kaggle-style name), refused uploads (415, 422), jobs with corrupt photos, a
job cancelled while it runs, and a model reload.

    python bench/dashboard_traffic.py --url http://127.0.0.1:8000 \\
        --photos ../shared/data/kaggle-dogs-vs-cats/train --seconds 120

Traffic goes only to the URL given; request counts and time are bounded.
"""

import argparse
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from client.photos import labelled_photos


def predict_with_feedback(
    url: str, photos: list[tuple[Path, str]], until: float, feedback_share: float, seed: int
) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"predicted": 0, "feedback": 0, "refused": 0}
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < until:
            path, label = rng.choice(photos)
            data = path.read_bytes()
            if rng.random() < 0.08:  # a refused upload now and then
                bad = rng.choice(
                    [(path.name, data[: len(data) // 3]), ("notes.txt", b"not a photo at all")]
                )
                http.post("/predict", files={"file": bad})
                counts["refused"] += 1
                continue
            answer = http.post("/predict", files={"file": (path.name, data)})
            if answer.status_code != 200:
                continue
            counts["predicted"] += 1
            if rng.random() < feedback_share:
                body = {"request_id": answer.json()["request_id"], "label": label}
                if http.post("/feedback", json=body).status_code == 200:
                    counts["feedback"] += 1
    return counts


def _files(photos: list[tuple[Path, str]], corrupt: bool) -> list[tuple[str, tuple[str, bytes]]]:
    files = [("files", (p.name, p.read_bytes())) for p, _ in photos]
    if corrupt:  # two items that fail in the worker: a truncated JPEG and an empty file
        files += [
            ("files", ("cut.jpg", photos[0][0].read_bytes()[:2000])),
            ("files", ("x.jpg", b"")),
        ]
    return files


def jobs(url: str, photos: list[tuple[Path, str]], seconds: float) -> None:
    """A job with corrupt photos at 20 % and 70 % of the run, a cancelled one at 50 %."""
    with httpx.Client(base_url=url, timeout=60) as http:
        time.sleep(seconds * 0.2)
        http.post("/jobs", files=_files(photos[:40], corrupt=True))
        time.sleep(seconds * 0.3)
        job = http.post("/jobs", files=_files(photos[40:240], corrupt=False)).json()
        time.sleep(3)
        http.delete(f"/jobs/{job['job_id']}")
        time.sleep(seconds * 0.2)
        http.post("/jobs", files=_files(photos[240:260], corrupt=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--photos", type=Path, required=True, help="a labelled photo folder")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=2, help="concurrent /predict loops")
    parser.add_argument("--feedback-share", type=float, default=0.8)
    parser.add_argument(
        "--reload", action="store_true", help="run `python -m worker.reload` halfway through"
    )
    args = parser.parse_args(argv)
    found, _ = labelled_photos(args.photos)
    photos = [(p.path, p.label) for p in found]
    random.Random(0).shuffle(photos)
    until = time.monotonic() + args.seconds
    results: list[dict[str, int]] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                predict_with_feedback(args.url, photos, until, args.feedback_share, i)
            )
        )
        for i in range(args.clients)
    ]
    threads.append(threading.Thread(target=jobs, args=(args.url, photos, args.seconds)))
    for thread in threads:
        thread.start()
    if args.reload:
        time.sleep(args.seconds / 2)
        subprocess.run([sys.executable, "-m", "worker.reload"], check=False)
    for thread in threads:
        thread.join()
    totals = {k: sum(r[k] for r in results) for k in ("predicted", "feedback", "refused")}
    print(f"dashboard traffic: {totals}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
