"""The two MLflow REST calls offline metrics are read with (common/offline_metrics.py), served
for the fixture model, so the live stack can compare live quality with a test set.

`GET /api/2.0/mlflow/model-versions/get` names the version's training run and
`GET /api/2.0/mlflow/runs/get` gives that run's `test_*` metrics, in MLflow's JSON shapes.
Everything else answers 404 like an unknown resource, `/health` included, so
`evaluate-deployment` reads its offline metrics here but does not try to log a run here.
"""

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/api/2.0/mlflow"
RUN_ID = "fixture-training-run"


@dataclass
class MlflowStub:
    url: str
    server: ThreadingHTTPServer
    requests: list[str]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_mlflow_stub(
    model_name: str, version: str, test_metrics: Mapping[str, float]
) -> MlflowStub:
    """Serve `model_name` version `version` with `test_metrics` (names without `test_`)."""
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            requests.append(url.path)
            if url.path == f"{API}/model-versions/get" and query == {
                "name": model_name,
                "version": version,
            }:
                self._json(200, {"model_version": {**query, "run_id": RUN_ID}})
            elif url.path == f"{API}/runs/get" and query.get("run_id") == RUN_ID:
                metrics = [{"key": f"test_{k}", "value": v} for k, v in test_metrics.items()]
                self._json(200, {"run": {"info": {"run_id": RUN_ID}, "data": {"metrics": metrics}}})
            else:
                self._json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, name="mlflow-stub", daemon=True).start()
    return MlflowStub(f"http://127.0.0.1:{server.server_address[1]}", server, requests)
