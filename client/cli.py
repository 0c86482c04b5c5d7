"""The `catdog` command (also `python -m client`).

    catdog predict PHOTO_OR_FOLDER... [--url URL] [--format csv|json] [--output FILE]
    catdog jobs submit FOLDER [--wait] [--url URL] [--output FILE] [--format csv|json]
                              [--idempotency-key KEY] [--callback-url URL]
    catdog jobs status JOB_ID | results JOB_ID [--output FILE] | cancel JOB_ID
    catdog evaluate-deployment --data FOLDER [--min-accuracy 0.9] [--out DIR] [--url URL]
    catdog keys create --name SHELTER | list | revoke KEY_ID     (client/keys.py)

The service URL defaults to $CATDOG_URL, else http://127.0.0.1:8000; the API key to
$CATDOG_API_KEY (or --api-key). Exit status: 0 when
every photo was classified, 1 when some were not (their errors are in the output: a photo
the service refused, a file that could not be read), 2 when the service failed, refused the
API key or could not be reached (`predict` then writes the rows it has and sends no more). `evaluate-deployment` (client/evaluate_deployment.py): 0 passed,
1 below the gate, 2 could not evaluate.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from client import evaluate_deployment, keys
from client.api import ApiError, CatdogClient, MultipartBody
from client.output import render, row
from client.photos import find_photos

DEFAULT_URL = "http://127.0.0.1:8000"


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    return "json" if args.output and str(args.output).endswith(".json") else "csv"


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        print(f"wrote {output}", file=sys.stderr)


def _named_photos(paths: list[Path]) -> list[tuple[str, Path]]:
    """(the name its row shows, the file) for each path given: a file by its name, a folder
    by each of its photos (`find_photos`), named by their path inside it."""
    named = []
    for path in paths:
        if path.is_dir():
            named += [(found.relative_to(path).as_posix(), found) for found in find_photos(path)]
        else:
            named.append((path.name, path))
    return named


def _about_the_photo(error: ApiError) -> bool:
    """A refusal of this photo (413, 415, 422) or the model failing on it; anything else (the
    key refused, the service down, full or too slow) is about the caller or the service."""
    return error.status in (413, 415, 422) or error.reason == "inference_failed"


def _progress_bar(total: int) -> Any:
    # One photo needs no bar.
    return tqdm(total=total, unit="photo", desc="classifying", file=sys.stderr, disable=total < 2)


def cmd_predict(client: CatdogClient, args: argparse.Namespace) -> int:
    named = _named_photos(args.photos)
    if not named:
        print(f"no photos in {', '.join(map(str, args.photos))}", file=sys.stderr)
        return 2
    rows = []
    failed: ApiError | None = None
    with _progress_bar(len(named)) as bar:
        for name, photo in named:
            try:
                rows.append(row(name, client.predict(photo)))
            except OSError as exc:  # the file itself (missing, unreadable): nothing was sent
                rows.append(row(name, None, error=f"unreadable: {exc.strerror or exc}"))
            except ApiError as exc:
                rows.append(row(name, None, error=f"{exc.reason}: {exc.detail}"))
                if not _about_the_photo(exc):  # it would meet every photo after this one
                    failed = exc
                    break
            bar.update(1)
    _write(render(rows, _format(args)), args.output)
    if failed is not None:
        unsent = len(named) - len(rows)
        print(f"error: {failed}; {unsent} photo{'s' * (unsent != 1)} not sent", file=sys.stderr)
        return 2
    return 0 if all(r["error"] is None for r in rows) else 1


def cmd_jobs_submit(client: CatdogClient, args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"not a folder: {args.folder} (a job takes a folder of photos)", file=sys.stderr)
        return 2
    photos = find_photos(args.folder)
    if not photos:
        print(f"no photos under {args.folder}", file=sys.stderr)
        return 2
    size = MultipartBody(photos, {}).length()
    with tqdm(total=size, unit="B", unit_scale=True, desc="uploading", file=sys.stderr) as bar:
        accepted = client.submit_job(
            photos,
            callback_url=args.callback_url,
            idempotency_key=args.idempotency_key,
            on_bytes=bar.update,
        )
    print(f"job {accepted['job_id']}: {accepted['status_url']}", file=sys.stderr)
    if not args.wait:
        print(json.dumps(accepted))
        return 0
    with _progress_bar(accepted["total"]) as bar:

        def progress(summary: dict[str, Any]) -> None:
            bar.update(summary["done"] + summary["failed"] - bar.n)

        final = client.wait(accepted["job_id"], poll_s=args.poll, on_progress=progress)
    return _write_results(client, final, args)


def _write_results(client: CatdogClient, summary: dict[str, Any], args: argparse.Namespace) -> int:
    items = client.results(summary["job_id"])
    rows = [row(item["filename"], item) for item in items]
    _write(render(rows, _format(args)), args.output)
    print(
        f"job {summary['job_id']} {summary['status']}: "
        f"{summary['done']} classified, {summary['failed']} failed",
        file=sys.stderr,
    )
    if summary["status"] != "succeeded":
        return 1
    return 0 if summary["failed"] == 0 else 1


def cmd_jobs_status(client: CatdogClient, args: argparse.Namespace) -> int:
    summary = client.job(args.job_id, limit=1)
    summary.pop("results", None)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_jobs_results(client: CatdogClient, args: argparse.Namespace) -> int:
    return _write_results(client, client.job(args.job_id, limit=1), args)


def cmd_jobs_cancel(client: CatdogClient, args: argparse.Namespace) -> int:
    print(json.dumps(client.cancel(args.job_id), indent=2))
    return 0


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    parser.add_argument(
        "--format", choices=("csv", "json"), help="default: from --output, else csv"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catdog", description="Classify photos as cat or dog.")
    parser.add_argument(
        "--url",
        default=os.environ.get("CATDOG_URL", DEFAULT_URL),
        help=f"service URL (default: $CATDOG_URL, else {DEFAULT_URL})",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument(
        "--api-key", default=os.environ.get("CATDOG_API_KEY"), help="default: $CATDOG_API_KEY"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="classify photos one by one, synchronously")
    predict.add_argument(
        "photos", nargs="+", type=Path, metavar="PHOTO", help="a photo, or a folder of photos"
    )
    _output_options(predict)
    predict.set_defaults(run=cmd_predict)

    jobs = commands.add_parser("jobs", help="bulk jobs").add_subparsers(dest="jobs", required=True)
    submit = jobs.add_parser("submit", help="upload every photo of a folder as one job")
    submit.add_argument("folder", type=Path)
    submit.add_argument("--wait", action="store_true", help="wait, then write the results")
    submit.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    submit.add_argument(
        "--idempotency-key",
        help="a retry with the same key and the same photos gets the first job, not a new one",
    )
    submit.add_argument(
        "--callback-url", help="the service POSTs the job's summary here, signed, when it ends"
    )
    _output_options(submit)
    submit.set_defaults(run=cmd_jobs_submit)
    subs = [predict, submit]
    for name, run, text in (
        ("status", cmd_jobs_status, "show a job's status"),
        ("results", cmd_jobs_results, "write a job's results"),
        ("cancel", cmd_jobs_cancel, "cancel a job"),
    ):
        sub = jobs.add_parser(name, help=text)
        sub.add_argument("job_id")
        if name == "results":
            _output_options(sub)
        sub.set_defaults(run=run)
        subs.append(sub)

    evaluate = commands.add_parser(
        "evaluate-deployment",
        help="gate a deployment on a labelled folder sent through the live API",
        description=evaluate_deployment.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_deployment.add_arguments(evaluate)
    evaluate.set_defaults(run=evaluate_deployment.run)
    subs.append(evaluate)
    for sub in subs:  # `--url` after the command works too
        sub.add_argument("--url", default=argparse.SUPPRESS, help="service URL")
    keys.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with CatdogClient(args.url, timeout_s=args.timeout, api_key=args.api_key) as client:
            code: int = args.run(client, args)
            return code
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
