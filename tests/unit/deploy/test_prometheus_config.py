"""deploy/prometheus.yml, deploy/alerts.yml and the Grafana provisioning are valid and agree
with the compose file: promtool accepts the config and the rules, the alert unit tests in
alerts_test.yml pass, every scrape target is a compose service, and every file compose
mounts into Prometheus and Grafana exists."""

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; make setup does it)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


# deploy.sh mounts the VM's copy of deploy/ (DEPLOY_CONFIG_DIR); by hand, the checkout's.
CONFIG_DIR_DEFAULT = "${DEPLOY_CONFIG_DIR:-./deploy}"


def config_mounts(service: str) -> dict[str, str]:
    """source -> target of the files a service mounts from the configuration folder, with
    DEPLOY_CONFIG_DIR at its default (the checkout's deploy/)."""
    mounts = {}
    for volume in compose_services()[service]["volumes"]:
        if volume.startswith(CONFIG_DIR_DEFAULT):
            source, target = volume.replace(CONFIG_DIR_DEFAULT, "./deploy", 1).split(":")[:2]
            mounts[source] = target
    return mounts


@needs_promtool
def test_promtool_accepts_the_prometheus_config() -> None:
    result = promtool("check", "config", "deploy/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", "deploy/alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_alerts_fire_on_their_unit_test_series() -> None:
    result = promtool("test", "rules", "tests/unit/deploy/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    # The check is a real one: an expression that does not parse fails it.
    broken = tmp_path / "alerts.yml"
    broken.write_text(
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(foo[5m]) > \n"
    )
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_every_scrape_target_is_a_compose_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    services = compose_services()
    hosts = []
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            hosts += [(job["job_name"], name) for name in sd["names"]]
        for static in job.get("static_configs", []):
            hosts += [(job["job_name"], t.split(":")[0]) for t in static["targets"]]
    assert {job for job, _ in hosts} >= {"gateway", "workers", "flower"}
    for job, host in hosts:
        assert host == "localhost" or host in services, f"{job}: {host} is not a compose service"


def test_flower_is_scraped_under_its_url_prefix() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (flower,) = [j for j in config["scrape_configs"] if j["job_name"] == "flower"]
    command = " ".join(map(str, compose_services()["flower"]["command"]))
    assert "--url_prefix=flower" in command
    assert flower["metrics_path"] == "/flower/metrics"


def test_every_monitoring_file_compose_mounts_exists() -> None:
    targets = {**config_mounts("prometheus"), **config_mounts("grafana")}
    assert len(targets) == 4, f"compose mounts from deploy/ only {sorted(targets)}"
    for source in targets:
        assert (ROOT / source).exists(), f"compose mounts {source}, which does not exist"
    assert targets["./deploy/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert targets["./deploy/alerts.yml"].endswith("/alerts.yml")
    prometheus_config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert prometheus_config["rule_files"] == ["alerts.yml"]  # next to the mounted config


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_datasource() -> None:
    volumes = config_mounts("grafana")
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/catdog.yml").read_text())[
        "providers"
    ]
    assert providers[0]["options"]["path"] == volumes["./deploy/grafana/dashboards"]
    (datasource,) = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana/dashboards/catdog.json").read_text())
    uids = {
        p["datasource"]["uid"] for p in dashboard["panels"] if isinstance(p.get("datasource"), dict)
    }
    assert uids == {datasource["uid"]}
