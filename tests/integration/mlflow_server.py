"""A real MLflow tracking server for the live stack: the fixture model is registered in it
with the test-set metrics an evaluate stage would have logged, so the gateway's drift gauges
and `catdog evaluate-deployment` read offline metrics over MLflow's own REST API."""

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient

from tests.integration.processes import Process, free_port, spawn, wait_for_http


def start_mlflow_server(workdir: Path) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{workdir}/mlflow.db"]
    argv += ["--default-artifact-root", str(workdir / "artifacts"), "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    # As in compose: no job runner. With it on, each server forks seven huey consumers that
    # outlive its process group and, on two cores, hold its start past two minutes.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    proc = spawn(f"mlflow-{port}", argv, env, workdir)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(proc, f"{url}/health", 120, "the MLflow server")
    return proc, url


def register_version(url: str, name: str, test_metrics: Mapping[str, float]) -> str:
    """A training run holding `test_*` metrics and a registered version of `name` linked to
    it, exactly the shape the evaluate and register stages leave behind."""
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment_id = client.create_experiment("catdog")
    run_id = client.create_run(experiment_id).info.run_id
    for key, value in test_metrics.items():
        client.log_metric(run_id, f"test_{key}", value)
    client.set_terminated(run_id)
    client.create_registered_model(name)
    return str(client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)
