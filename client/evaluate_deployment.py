"""`catdog evaluate-deployment --url URL --data FOLDER [--min-accuracy 0.9] [--out DIR]`

Post-deployment evaluation through the LIVE API, the deployment pipeline's last gate:

1. every labelled photo of FOLDER (Cat/ Dog/ sub-folders any case, or cat.N.jpg names) goes
   through POST /jobs (in jobs of at most --job-size files), polled until done, all result
   pages read;
2. a sample of POST /predict calls measures per-request latency;
3. accuracy, precision, recall, F1, ROC AUC, ECE, the confusion matrix and latency
   percentiles are computed, and compared with the offline test metrics of the model version
   that answered (its `model` field), read from MLflow;
4. report.md, confusion_matrix.png, metrics.json and predictions.csv go into --out, and are
   logged to MLflow as a run tagged with that model version (tags `model_name`,
   `model_version`, `model_run_id`: the registered version's training run);
5. the exit status is 1 when accuracy < --min-accuracy (or too many photos failed), 2 when
   the evaluation could not run, else 0.

MLflow is optional: if it is not installed or not reachable the report says so and the gate
still decides. Torch-free.
"""

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from client.api import ApiError, CatdogClient
from client.deployment_report import (
    DeploymentReport,
    Outcome,
    classification_metrics,
    confusion_matrix,
    errors_by_reason,
    gate,
    latency_summary,
    outcome_from_item,
    render_markdown,
    versions_seen,
)
from client.photos import LabelledPhoto, labelled_photos
from common.classification import plot_confusion_matrix
from common.errors import OfflineMetricsUnavailableError
from common.labels import cap_per_class
from common.offline_metrics import fetch_offline_metrics
from common.settings import get_settings
from common.wire import TERMINAL

EXPERIMENT = "catdog-deployment"
# Attempts at submitting one job while the service answers 429 or 503.
SUBMIT_ATTEMPTS = 6
RETRY_S = 5.0
FILES = ("report.md", "confusion_matrix.png", "metrics.json", "predictions.csv")

Sleep = Callable[[float], None]


class EvaluationError(Exception):
    """The evaluation could not run (exit status 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `evaluate-deployment` (`--url` and `--timeout` come from the CLI)."""
    parser.add_argument("--data", type=Path, required=True, help="a labelled photo folder")
    parser.add_argument(
        "--min-accuracy", type=float, default=0.9, help="exit 1 below this accuracy"
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=0.05,
        help="exit 1 when a larger share of the photos fails",
    )
    parser.add_argument("--out", type=Path, help="report folder (default reports/deployment-*)")
    parser.add_argument(
        "--mlflow-tracking-uri",
        default=None,
        help="where to read offline metrics and log the run (default CATDOG_MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--max-per-class", type=int, default=0, help="cap photos per label")
    parser.add_argument("--job-size", type=int, default=500, help="photos per job (<= limit)")
    parser.add_argument(
        "--latency-samples", type=int, default=30, help="POST /predict calls timed one by one"
    )
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between job polls")
    parser.add_argument(
        "--job-timeout", type=float, default=1800.0, help="seconds to wait for each job"
    )


def run(client: CatdogClient, args: argparse.Namespace, sleep: Sleep = time.sleep) -> int:
    """The command: 0 passed, 1 failed the gate, 2 could not evaluate."""
    try:
        report, out = evaluate(client, args, sleep)
    except EvaluationError as exc:
        print(f"evaluate-deployment: {exc}", file=sys.stderr)
        return 2
    except (ApiError, httpx.HTTPError) as exc:
        print(f"evaluate-deployment: the API failed: {exc}", file=sys.stderr)
        return 2
    verdict = "PASS" if report.passed else "FAIL: " + "; ".join(report.failures)
    accuracy = report.metrics.get("accuracy", float("nan"))
    print(
        f"evaluate-deployment: {verdict} (accuracy {accuracy:.4f}, model"
        f" {report.model_name} v{report.model_version}); report in {out / 'report.md'}",
        file=sys.stderr,
    )
    return 0 if report.passed else 1


# --- the steps -----------------------------------------------------------------------------


def evaluate(
    client: CatdogClient, args: argparse.Namespace, sleep: Sleep = time.sleep
) -> tuple[DeploymentReport, Path]:
    photos = _photos(args.data, args.max_per_class)
    tracking_uri = args.mlflow_tracking_uri or get_settings().mlflow_tracking_uri
    started = time.perf_counter()
    outcomes, jobs = classify(client, photos, args.job_size, args.poll, args.job_timeout, sleep)
    job_seconds = time.perf_counter() - started
    client_ms, server_ms, predict_failures = measure_latency(client, photos, args.latency_samples)
    report = build_report(
        url=str(client.http.base_url),
        data=str(args.data),
        outcomes=outcomes,
        min_accuracy=args.min_accuracy,
        max_error_rate=args.max_error_rate,
    )
    report.predict_latency_ms = latency_summary(client_ms)
    report.server_latency_ms = latency_summary(server_ms)
    report.predict_failures = predict_failures
    report.jobs, report.job_seconds = jobs, job_seconds
    _attach_offline(report, tracking_uri)
    out = _out_dir(args.out)
    # The copy logged to MLflow says where it lives; the local copy gets the outcome below.
    report.mlflow_note = f"this report is an artifact of a run in experiment `{EXPERIMENT}`"
    files = write_outputs(report, outcomes, out)
    report.mlflow_note = log_to_mlflow(tracking_uri, report, files, args)
    (out / "report.md").write_text(render_markdown(report))
    return report, out


def _photos(folder: Path, max_per_class: int) -> list[LabelledPhoto]:
    if not folder.is_dir():
        raise EvaluationError(f"{folder} is not a folder")
    photos, unlabelled = labelled_photos(folder)
    photos = cap_per_class(photos, max_per_class)
    if not photos:
        raise EvaluationError(
            f"no labelled photos under {folder} (Cat/ and Dog/ sub-folders, or cat.N.jpg names);"
            f" {len(unlabelled)} images without a label"
        )
    return photos


def classify(
    client: CatdogClient,
    photos: Sequence[LabelledPhoto],
    job_size: int,
    poll_s: float,
    job_timeout_s: float,
    sleep: Sleep = time.sleep,
) -> tuple[list[Outcome], int]:
    """Every photo through POST /jobs, in jobs of `job_size`; (outcomes in order, jobs)."""
    outcomes: list[Outcome] = []
    jobs = 0
    for start in range(0, len(photos), max(1, job_size)):
        chunk = photos[start : start + job_size]
        job_id = _submit(client, [p.path for p in chunk], sleep)
        jobs += 1
        _wait(client, job_id, poll_s, job_timeout_s, sleep)
        items = {int(item["index"]): item for item in client.results(job_id)}
        for index, photo in enumerate(chunk):
            item = items.get(index, {"status": "missing"})
            outcomes.append(outcome_from_item(photo.path.name, photo.label, item))
        print(f"evaluate-deployment: {len(outcomes)}/{len(photos)} photos", file=sys.stderr)
    return outcomes, jobs


def _submit(client: CatdogClient, paths: list[Path], sleep: Sleep) -> str:
    for attempt in range(1, SUBMIT_ATTEMPTS + 1):
        try:
            return str(client.submit_job(paths)["job_id"])
        except ApiError as exc:
            if exc.status not in (429, 503) or attempt == SUBMIT_ATTEMPTS:
                raise
            print(f"evaluate-deployment: {exc}; retrying in {RETRY_S:g} s", file=sys.stderr)
            sleep(RETRY_S)
    raise AssertionError("unreachable")


def _wait(client: CatdogClient, job_id: str, poll_s: float, timeout_s: float, sleep: Sleep) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        summary = client.job(job_id, limit=1)
        if summary["status"] in TERMINAL:
            return
        if time.monotonic() > deadline:
            client.cancel(job_id)
            raise EvaluationError(f"job {job_id} did not finish within {timeout_s:g} s")
        sleep(poll_s)


def measure_latency(
    client: CatdogClient, photos: Sequence[LabelledPhoto], samples: int
) -> tuple[list[float], list[float], int]:
    """(client round-trip ms, gateway latency_ms, failures) of `samples` sequential
    POST /predict calls on photos spread over the folder."""
    if samples <= 0:
        return [], [], 0
    step = max(1, len(photos) // samples)
    chosen = list(photos[::step])[:samples]
    client_ms: list[float] = []
    server_ms: list[float] = []
    failures = 0
    for photo in chosen:
        started = time.perf_counter()
        try:
            answer = client.predict(photo.path)
        except ApiError:
            failures += 1
            continue
        client_ms.append((time.perf_counter() - started) * 1000)
        if "latency_ms" in answer:
            server_ms.append(float(answer["latency_ms"]))
    return client_ms, server_ms, failures


def build_report(
    *,
    url: str,
    data: str,
    outcomes: Sequence[Outcome],
    min_accuracy: float,
    max_error_rate: float,
) -> DeploymentReport:
    metrics = classification_metrics(outcomes)
    seen = versions_seen(outcomes)
    (name, version), _ = seen.most_common(1)[0] if seen else ((None, None), 0)
    labels: dict[str, int] = {}
    for o in outcomes:
        labels[o.actual] = labels.get(o.actual, 0) + 1
    return DeploymentReport(
        url=url,
        data=data,
        evaluated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        labels=labels,
        metrics=metrics,
        matrix=confusion_matrix(outcomes),
        min_accuracy=min_accuracy,
        max_error_rate=max_error_rate,
        failures=gate(metrics, min_accuracy, max_error_rate),
        model_name=name or None,
        model_version=version or None,
        versions={f"{n} v{v}": count for (n, v), count in seen.most_common()},
        errors=errors_by_reason(outcomes),
    )


def _attach_offline(report: DeploymentReport, tracking_uri: str) -> None:
    if not report.model_name or not report.model_version:
        report.offline_note = "no model version answered, so there is nothing to compare with"
        return
    try:
        offline = fetch_offline_metrics(tracking_uri, report.model_name, report.model_version)
    except OfflineMetricsUnavailableError as exc:
        report.offline_note = f"not available ({exc.message})"
        return
    report.offline = dict(offline.metrics)
    if "predicted_cat_share" not in report.offline and offline.predicted_cat_share is not None:
        report.offline["predicted_cat_share"] = offline.predicted_cat_share
    report.offline_run_id = offline.run_id


def _out_dir(requested: Path | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = requested or Path("reports") / f"deployment-{stamp}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError:
        if requested is not None:
            raise
        # A read-only working directory (the worker image's /app): the report still goes
        # to MLflow, from a temporary folder.
        out = Path(tempfile.mkdtemp(prefix=f"catdog-deployment-{stamp}-"))
    return out


def write_outputs(report: DeploymentReport, outcomes: Sequence[Outcome], out: Path) -> list[Path]:
    title = f"{report.model_name} v{report.model_version} (live)"
    if plot_confusion_matrix(report.matrix, out / "confusion_matrix.png", title):
        report.confusion_png = "confusion_matrix.png"
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "passed": report.passed,
                "failures": report.failures,
                "model_name": report.model_name,
                "model_version": report.model_version,
                "live": report.metrics,
                "offline": report.offline,
                "confusion_matrix": report.matrix,
                "predict_latency_ms": report.predict_latency_ms,
                "server_latency_ms": report.server_latency_ms,
            },
            indent=2,
        )
        + "\n"
    )
    with (out / "predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(outcomes[0]).keys()))
        writer.writeheader()
        writer.writerows(asdict(o) for o in outcomes)
    (out / "report.md").write_text(render_markdown(report))
    return [out / name for name in FILES if (out / name).exists()]


# --- MLflow --------------------------------------------------------------------------------


def _reachable(tracking_uri: str) -> str | None:
    """None when the tracking server answers (or is not a server); else why not."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        httpx.get(tracking_uri.rstrip("/") + "/health", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        return f"MLflow at {tracking_uri} is unreachable: {exc}"
    return None


def log_to_mlflow(
    tracking_uri: str, report: DeploymentReport, files: list[Path], args: argparse.Namespace
) -> str:
    """Log the run; returns the line the report shows either way (never raises)."""
    unreachable = _reachable(tracking_uri)
    if unreachable:
        return f"not logged: {unreachable}"
    # A down server must cost seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param
    except ImportError:
        return "not logged: mlflow is not installed"
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        )
        run = client.create_run(
            experiment_id,
            run_name=f"evaluate-deployment-v{report.model_version}",
            tags=_tags(report),
        )
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"live_{k}", float(v), now, 0)
            for k, v in report.metrics.items()
            if isinstance(v, int | float) and v == v  # NaN (e.g. AUC of one class) is skipped
        ]
        metrics += [
            Metric(f"predict_latency_{k}_ms", float(v), now, 0)
            for k, v in report.predict_latency_ms.items()
            if k != "n" and v == v
        ]
        params = [
            Param("min_accuracy", str(args.min_accuracy)),
            Param("max_error_rate", str(args.max_error_rate)),
            Param("data", str(args.data)),
            Param("url", report.url),
        ]
        client.log_batch(run_id, metrics=metrics, params=params)
        for path in files:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")
        _tag_model_version(client, report, run_id)
    except Exception as exc:  # the gate decides, whatever MLflow does
        return f"not logged: {type(exc).__name__}: {exc}"
    return f"logged as run `{run_id}` in experiment `{EXPERIMENT}` at {tracking_uri}"


def _tags(report: DeploymentReport) -> dict[str, str]:
    tags = {
        "stage": "deployment-evaluation",
        "passed": str(report.passed).lower(),
        "gateway_url": report.url,
        "model_name": report.model_name or "",
        "model_version": report.model_version or "",
    }
    if report.offline_run_id:
        tags["model_run_id"] = report.offline_run_id
    return tags


def _tag_model_version(client: Any, report: DeploymentReport, run_id: str) -> None:
    """The registry side of the link: the version names its latest deployment evaluation."""
    if not report.model_version or not report.model_version.isdigit() or not report.model_name:
        return
    try:
        client.set_model_version_tag(
            report.model_name, report.model_version, "deployment_evaluation_run_id", run_id
        )
        accuracy = report.metrics.get("accuracy")
        if accuracy is not None:
            client.set_model_version_tag(
                report.model_name, report.model_version, "deployment_accuracy", f"{accuracy:.6f}"
            )
    except Exception:  # the registry may not hold this version (e.g. a different server)
        return
