"""Every metric the Grafana dashboard and the alert rules query is one that our code exports
(gateway/metrics.py, worker/metrics.py), or Flower's, or Prometheus's own: a renamed metric
breaks this test instead of leaving an empty panel or an alert that can never fire.

(The same check against a live local stack, which also proves the metrics are really
exported, runs with the integration tests.)"""

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from gateway.monitoring.metrics import GatewayMetrics
from worker import metrics as worker_metrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "catdog.json"
ALERTS = ROOT / "deploy" / "alerts.yml"

# flower/events.py (Flower 2.x), scraped at flower:5555/flower/metrics.
FLOWER_METRICS = {
    "flower_events_total",
    "flower_task_runtime_seconds_bucket",
    "flower_task_runtime_seconds_sum",
    "flower_task_runtime_seconds_count",
    "flower_task_prefetch_time_seconds",
    "flower_worker_prefetched_tasks",
    "flower_worker_online",
    "flower_worker_number_of_currently_executing_tasks",
}
PROMETHEUS_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names or durations."""
    text = _GRAFANA_VARIABLE.sub("", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def exported_names(families: Iterable[Metric]) -> set[str]:
    """The sample names a family exposes (`_total` on counters, histogram series)."""
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def known_names() -> set[str]:
    gateway = exported_names(GatewayMetrics().registry.collect())
    worker = exported_names(f for m in worker_metrics.ALL_METRICS for f in m.describe())
    return gateway | worker | FLOWER_METRICS | PROMETHEUS_METRICS


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], str(rule["expr"]))
        for group in groups
        for rule in group["rules"]
    ]


EXPRESSIONS = [("dashboard", *e) for e in dashboard_expressions()] + [
    ("alerts", *e) for e in alert_expressions()
]


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, queue) (rate(catdog_x_bucket{route="/p",le!="1"}'
        "[$__rate_interval]))) / ignoring(source) up offset 5m > bool 1e3 and on (a) abs(b)"
    )
    assert metric_names(expr) == {"catdog_x_bucket", "up", "b"}


def test_both_files_query_something() -> None:
    assert len(dashboard_expressions()) >= 20
    assert len(alert_expressions()) >= 5


@pytest.mark.parametrize(
    ("where", "name", "expr"), EXPRESSIONS, ids=[f"{w}: {n}" for w, n, _ in EXPRESSIONS]
)
def test_every_queried_metric_is_exported(where: str, name: str, expr: str) -> None:
    unknown = metric_names(expr) - known_names()
    assert not unknown, f"{where} '{name}' queries metrics nobody exports: {sorted(unknown)}"


def test_the_flower_names_are_flowers() -> None:
    events = pytest.importorskip("flower.events")
    source = Path(events.__file__).read_text()
    for name in FLOWER_METRICS:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"'{base.removesuffix('_total')}" in source or f"'{base}'" in source, name


def test_the_dashboard_has_the_panels_on_call_needs() -> None:
    titles = " | ".join(t.lower() for t, _ in dashboard_expressions())
    for needed in (
        "request rate",
        "latency",
        "error rate",
        "queue depth",
        "throughput",
        "batch sizes",
        "prediction mix",
        "winning-probability",
        "live accuracy",
    ):
        assert needed in titles, needed
