"""The `catdog` command: output rows, formats and exit statuses (mock transport)."""

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from client import cli, evaluate_deployment
from client.api import CatdogClient
from client.output import COLUMNS, render, row

ROOT = Path(__file__).resolve().parents[3]

PREDICTION = {
    "label": "dog",
    "probability": 0.9,
    "probabilities": {"cat": 0.1, "dog": 0.9},
    "model": {"name": "catdog", "version": "3"},
}


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """Answers /predict: 422 for bad.*, 503 for down.*, else 200."""
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        body = request.read()
        if b'filename="bad.' in body:
            return httpx.Response(
                422, json={"detail": "the file is empty (0 bytes)", "reason": "empty"}
            )
        if b'filename="down.' in body:
            return httpx.Response(
                503, json={"detail": "no worker serves the realtime queue", "reason": "no_worker"}
            )
        return httpx.Response(200, json={**PREDICTION, "request_id": "r", "latency_ms": 1.0})

    def make(
        url: str, timeout_s: float = 60.0, transport: Any = None, api_key: str | None = None
    ) -> CatdogClient:
        return CatdogClient(url, timeout_s, transport=httpx.MockTransport(handler), api_key=api_key)

    monkeypatch.setattr(cli, "CatdogClient", make)
    return requests


def photos(tmp_path: Path, *names: str) -> list[str]:
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    return [str(tmp_path / name) for name in names]


def test_predict_writes_csv_rows_and_exits_0(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--url", "http://svc", "predict", *photos(tmp_path, "a.jpg", "b.jpg")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["filename"] for r in rows] == ["a.jpg", "b.jpg"]
    assert (
        rows[0]["label"] == "dog" and rows[0]["p_dog"] == "0.9" and rows[0]["model_version"] == "3"
    )
    assert str(service[0].url) == "http://svc/predict"


def test_the_client_sends_the_api_key_from_the_environment(
    service: list[httpx.Request], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATDOG_API_KEY", "cdk_secret")
    assert cli.main(["predict", *photos(tmp_path, "a.jpg")]) == 0
    assert service[0].headers["X-API-Key"] == "cdk_secret"
    assert cli.main(["--api-key", "cdk_other", "predict", *photos(tmp_path, "b.jpg")]) == 0
    assert service[1].headers["X-API-Key"] == "cdk_other"


def test_predict_reports_a_refused_photo_and_exits_1(
    service: list[httpx.Request], tmp_path: Path
) -> None:
    output = tmp_path / "out.json"
    code = cli.main(["predict", *photos(tmp_path, "a.jpg", "bad.jpg"), "-o", str(output)])
    assert code == 1
    rows = json.loads(output.read_text())  # .json output implies the JSON format
    assert rows[1]["error"] == "empty: the file is empty (0 bytes)" and rows[1]["label"] is None


def test_a_folder_stands_for_its_photos_named_by_their_path_in_it(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "kennel" / "inside").mkdir(parents=True)
    photos(tmp_path / "kennel", "a.jpg", "notes.txt")
    photos(tmp_path / "kennel" / "inside", "b.png")
    loose = photos(tmp_path, "c.jpg")
    assert cli.main(["predict", str(tmp_path / "kennel"), *loose]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["filename"] for r in rows] == ["a.jpg", "inside/b.png", "c.jpg"]
    assert len(service) == 3


def test_a_folder_without_photos_exits_2_and_sends_nothing(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["predict", str(tmp_path)]) == 2
    assert "no photos in" in capsys.readouterr().err and not service


def test_a_missing_file_is_a_row_with_its_error_and_the_rest_are_classified(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["predict", str(tmp_path / "gone.jpg"), *photos(tmp_path, "a.jpg")])
    assert code == 1
    gone, found = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert gone["filename"] == "gone.jpg" and gone["error"].startswith("unreadable: No such file")
    assert found["label"] == "dog" and len(service) == 1


def test_a_failing_service_stops_the_run_and_keeps_the_answers_so_far(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["predict", *photos(tmp_path, "a.jpg", "down.jpg", "b.jpg")])
    assert code == 2
    out = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert [r["filename"] for r in rows] == ["a.jpg", "down.jpg"]
    assert rows[0]["label"] == "dog" and rows[1]["error"].startswith("no_worker:")
    assert "1 photo not sent" in out.err and len(service) == 2


def test_a_refused_key_stops_the_run_at_its_first_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(
            401, json={"detail": "the API key is not known", "reason": "invalid_api_key"}
        )

    monkeypatch.setattr(
        cli,
        "CatdogClient",
        lambda url, *a, **k: CatdogClient(url, transport=httpx.MockTransport(refuse)),
    )
    assert cli.main(["predict", *photos(tmp_path, "a.jpg", "b.jpg")]) == 2
    assert len(sent) == 1 and "1 photo not sent" in capsys.readouterr().err


def test_a_job_of_a_path_that_is_not_a_folder_says_so(
    service: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (photo,) = photos(tmp_path, "a.jpg")
    assert cli.main(["jobs", "submit", photo]) == 2
    assert cli.main(["jobs", "submit", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("not a folder:") == 2 and not service


def test_an_unreachable_service_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = cli.main(
        ["--url", "http://127.0.0.1:9", "--timeout", "1", "predict", *photos(tmp_path, "a.jpg")]
    )
    assert code == 2
    assert "cannot reach" in capsys.readouterr().err


def test_rows_flatten_results_and_item_errors() -> None:
    failed = {"error": {"reason": "truncated", "message": "cut"}, "label": None}
    assert row("x.jpg", failed)["error"] == "truncated: cut"
    csv_text = render([row("a.jpg", PREDICTION), row("x.jpg", failed)], "csv")
    assert csv_text.splitlines()[0] == ",".join(COLUMNS)
    assert json.loads(render([row("a.jpg", PREDICTION)], "json"))[0]["p_cat"] == 0.1


def test_the_deployment_gates_command_line_is_a_catdog_command() -> None:
    # docker-compose.yml's `evaluate` service (run by deploy/evaluate.sh in CI) runs exactly
    # this through `python -m client`; a renamed option would fail the deploy, not this test.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["evaluate"]["command"]
    assert command[:4] == ["python", "-m", "client", "evaluate-deployment"]
    argv = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in command[3:]]
    args = cli.build_parser().parse_args(argv)
    assert (args.url, args.data, args.min_accuracy) == (
        "http://gateway:8000",
        Path("/eval-data"),
        0.9,
    )
    assert args.run is evaluate_deployment.run


def test_evaluate_deployment_without_labelled_photos_exits_2(tmp_path: Path) -> None:
    code = cli.main(["evaluate-deployment", "--url", "http://127.0.0.1:1", "--data", str(tmp_path)])
    assert code == 2
