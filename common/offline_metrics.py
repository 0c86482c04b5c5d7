"""The offline test-set metrics of a registered model version, read from MLflow.

The evaluate stage logs them as `test_accuracy`, `test_f1_macro`, `test_recall_cat`, ... on
the training run, and the registered version's `run_id` names that run. Monitoring compares
live behaviour with these numbers: the gateway's drift gauges and `catdog
evaluate-deployment`.

Torch-free and MLflow-free where it matters: an http(s) tracking URI is read through MLflow's
REST API with httpx (the gateway image has no mlflow); any other URI (a local `sqlite:///`
store in development) goes through the `mlflow` package when it is installed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from common.errors import OfflineMetricsUnavailableError

TEST_PREFIX = "test_"


@dataclass(frozen=True)
class OfflineMetrics:
    model_name: str
    model_version: str
    run_id: str
    # Test-set metrics without their `test_` prefix: accuracy, f1_macro, recall_cat, ...
    metrics: Mapping[str, float]

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def predicted_cat_share(self) -> float | None:
        """Share of test images the model called `cat`.

        Logged directly when the evaluate stage records it; otherwise derived from the
        per-class supports and recalls: cats called cat plus dogs not called dog."""
        if "predicted_cat_share" in self.metrics:
            return self.metrics["predicted_cat_share"]
        m = self.metrics
        needed = ("support_cat", "support_dog", "recall_cat", "recall_dog")
        if not all(k in m for k in needed):
            return None
        total = m["support_cat"] + m["support_dog"]
        if total <= 0:
            return None
        called_cat = m["support_cat"] * m["recall_cat"] + m["support_dog"] * (1 - m["recall_dog"])
        return called_cat / total

    @property
    def mean_confidence(self) -> float | None:
        """Mean winning probability on the test set, when the evaluate stage logged it."""
        return self.metrics.get("mean_confidence")


def strip_test_prefix(raw: Mapping[str, float]) -> dict[str, float]:
    """The `test_*` entries of a run's metrics, prefix removed."""
    return {
        k.removeprefix(TEST_PREFIX): float(v) for k, v in raw.items() if k.startswith(TEST_PREFIX)
    }


def _check_version(version: str) -> None:
    if not version or not version.isdigit():
        # A checkpoint file serves as `file:<name>`: there is no registry entry to compare to.
        raise OfflineMetricsUnavailableError(
            f"model version {version!r} is not a registry version; no offline metrics to compare"
        )


def _rest_json(http: httpx.Client, path: str, params: dict[str, str], what: str) -> dict[str, Any]:
    try:
        response = http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise OfflineMetricsUnavailableError(f"MLflow is unreachable ({what}): {exc}") from exc
    if response.status_code != 200:
        raise OfflineMetricsUnavailableError(
            f"MLflow answered {response.status_code} for {what}: {response.text[:200]}"
        )
    body: dict[str, Any] = response.json()
    return body


def fetch_over_rest(
    tracking_uri: str,
    model_name: str,
    version: str,
    *,
    timeout_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> OfflineMetrics:
    """Through MLflow's REST API: model-versions/get for the run id, then runs/get."""
    _check_version(version)
    base = tracking_uri.rstrip("/") + "/api/2.0/mlflow"
    with httpx.Client(base_url=base, timeout=timeout_s, transport=transport) as http:
        mv = _rest_json(
            http,
            "/model-versions/get",
            {"name": model_name, "version": version},
            f"model {model_name} version {version}",
        )
        run_id = str(mv.get("model_version", {}).get("run_id") or "")
        if not run_id:
            raise OfflineMetricsUnavailableError(
                f"model {model_name} version {version} names no training run"
            )
        run = _rest_json(http, "/runs/get", {"run_id": run_id}, f"run {run_id}")
    raw = {
        str(m["key"]): float(m["value"])
        for m in run.get("run", {}).get("data", {}).get("metrics", [])
    }
    return _result(model_name, version, run_id, raw)


def fetch_with_mlflow(tracking_uri: str, model_name: str, version: str) -> OfflineMetrics:
    """Through the mlflow package (any store it understands, e.g. a local SQLite file)."""
    _check_version(version)
    try:
        from mlflow import MlflowClient
    except ImportError as exc:
        raise OfflineMetricsUnavailableError(
            f"mlflow is not installed, so {tracking_uri} cannot be read"
        ) from exc
    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        run_id = str(client.get_model_version(model_name, version).run_id or "")
        raw = dict(client.get_run(run_id).data.metrics) if run_id else {}
    except Exception as exc:  # MlflowException, connection errors, a missing store
        raise OfflineMetricsUnavailableError(
            f"MLflow at {tracking_uri} has no model {model_name} version {version}: {exc}"
        ) from exc
    if not run_id:
        raise OfflineMetricsUnavailableError(
            f"model {model_name} version {version} names no training run"
        )
    return _result(model_name, version, run_id, raw)


def _result(model_name: str, version: str, run_id: str, raw: dict[str, float]) -> OfflineMetrics:
    metrics = strip_test_prefix(raw)
    if not metrics:
        raise OfflineMetricsUnavailableError(
            f"run {run_id} of model {model_name} version {version} has no test_* metrics"
        )
    return OfflineMetrics(model_name, version, run_id, metrics)


def fetch_offline_metrics(
    tracking_uri: str, model_name: str, version: str, *, timeout_s: float = 5.0
) -> OfflineMetrics:
    """The test-set metrics of `model_name` version `version`; raises
    OfflineMetricsUnavailableError with the reason when they cannot be had."""
    if tracking_uri.startswith(("http://", "https://")):
        return fetch_over_rest(tracking_uri, model_name, version, timeout_s=timeout_s)
    return fetch_with_mlflow(tracking_uri, model_name, version)
