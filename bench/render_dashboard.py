"""Render the Grafana dashboard (deploy/grafana/dashboards/catdog.json) as one PNG, from the
same PromQL, against a running Prometheus: a stand-in screenshot where no Grafana runs.

    python bench/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --start 2026-01-01T12:00:00Z --end 2026-01-01T12:20:00Z --out docs/monitoring/dashboard.png

Each panel's queries go to Prometheus's HTTP API (`/api/v1/query_range`) over the window,
with Grafana's `$__rate_interval` replaced by `--rate-interval`; the panels keep the
dashboard's grid (24 columns), titles, legends (`legendFormat`), units, stat thresholds and
value mappings. Time series are lines, stats the last value, the heatmap per-bucket rates.
Read-only: it only queries the Prometheus given.
"""

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "catdog.json"
GRID_COLUMNS = 24
# Inches: figure width, one grid row, and the room a panel keeps for its title and axes.
WIDTH_IN, ROW_IN, HEADER_IN = 22.0, 0.42, 0.9
PAD_IN = {"left": 0.75, "right": 0.2, "top": 0.32, "bottom": 0.3}
COLORS = {"green": "#56a64b", "red": "#e02f44", "yellow": "#f2cc0c", "blue": "#3274d9"}


@dataclass(frozen=True)
class Series:
    name: str
    times: list[datetime]
    values: list[float]


def parse_time(text: str) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 time (Z allowed)."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def legend(fmt: str | None, labels: dict[str, str]) -> str:
    if not fmt:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
        return f"{{{inner}}}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def query_range(
    http: httpx.Client, expr: str, start: float, end: float, step: float, rate_interval: str
) -> list[dict[str, Any]]:
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    response = http.get(
        "/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step}
    )
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def panel_series(
    http: httpx.Client, panel: dict[str, Any], start: float, end: float, step: float, rate: str
) -> list[Series]:
    out = []
    for target in panel.get("targets", []):
        for result in query_range(http, target["expr"], start, end, step, rate):
            points = [
                (datetime.fromtimestamp(float(t), UTC), float(v))
                for t, v in result["values"]
                if v not in ("NaN", "+Inf", "-Inf")
            ]
            if points:
                times, values = zip(*points, strict=True)
                name = legend(target.get("legendFormat"), result["metric"])
                out.append(Series(name, list(times), list(values)))
    return out


# --- units ----------------------------------------------------------------------------------


def format_value(value: float, unit: str | None) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if unit in ("Bps", "bytes"):
        for scale, suffix in ((2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {suffix}" + ("/s" if unit == "Bps" else "")
        return f"{value:.0f} B" + ("/s" if unit == "Bps" else "")
    if unit == "reqps":
        return f"{value:.2f} req/s"
    return f"{value:.3g}"


def axis_formatter(unit: str | None) -> FuncFormatter:
    return FuncFormatter(lambda v, _pos: format_value(v, unit))


def series_unit(panel: dict[str, Any], name: str) -> str | None:
    config = panel.get("fieldConfig", {})
    unit = config.get("defaults", {}).get("unit")
    for override in config.get("overrides", []):
        if override.get("matcher", {}).get("options") == name:
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    unit = prop["value"]
    return unit


# --- panels ---------------------------------------------------------------------------------


def _defaults(panel: dict[str, Any]) -> dict[str, Any]:
    defaults: dict[str, Any] = panel.get("fieldConfig", {}).get("defaults", {})
    return defaults


def _has_right_axis(panel: dict[str, Any]) -> bool:
    return any(
        prop.get("id") == "custom.axisPlacement" and prop.get("value") == "right"
        for override in panel.get("fieldConfig", {}).get("overrides", [])
        for prop in override.get("properties", [])
    )


def draw_timeseries(ax: Axes, panel: dict[str, Any], series: Sequence[Series]) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    right = None
    if stacked and series:
        # Series can start and stop at different times: stack them on the union of times.
        times = sorted({t for s in series for t in s.times})
        by_time = [dict(zip(s.times, s.values, strict=True)) for s in series]
        ax.stackplot(
            times,
            *[[values.get(t, 0.0) for t in times] for values in by_time],
            labels=[s.name for s in series],
            alpha=0.7,
        )
    for index, s in enumerate(series if not stacked else []):
        unit = series_unit(panel, s.name)
        target = ax
        if unit != defaults.get("unit") and unit is not None:  # an override on its own axis
            right = right or ax.twinx()
            target = right
            right.yaxis.set_major_formatter(axis_formatter(unit))
            right.tick_params(labelsize=7)
        dashed = s.name.endswith("test set")
        target.plot(
            s.times,
            s.values,
            label=s.name,
            color=f"C{index % 10}",  # one cycle across both axes
            linewidth=1.4,
            linestyle="--" if dashed else "-",
        )
    ax.yaxis.set_major_formatter(axis_formatter(defaults.get("unit")))
    if "min" in defaults or "max" in defaults:
        ax.set_ylim(defaults.get("min"), defaults.get("max"))
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        ax.legend(handles, labels, fontsize=6.5, loc="upper left", ncol=2, framealpha=0.6)


def threshold_color(panel: dict[str, Any], value: float) -> str:
    steps = panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps")
    if not steps:
        return COLORS["blue"]
    color = steps[0]["color"]
    for step in steps[1:]:
        if step["value"] is not None and value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


def mapped_text(panel: dict[str, Any], value: float) -> str | None:
    for mapping in panel.get("fieldConfig", {}).get("defaults", {}).get("mappings", []):
        options = mapping.get("options", {})
        key = str(int(value)) if value == int(value) else str(value)
        if mapping.get("type") == "value" and key in options:
            return str(options[key]["text"])
    return None


def draw_stat(ax: Axes, panel: dict[str, Any], series: Sequence[Series]) -> None:
    ax.set_axis_off()
    if not series:
        return
    width = 1 / len(series)
    for i, s in enumerate(series):
        value = s.values[-1]
        text = mapped_text(panel, value) or format_value(value, None)
        ax.add_patch(
            plt.Rectangle(
                (i * width + 0.01, 0.02),
                width - 0.02,
                0.8,
                color=threshold_color(panel, value),
                transform=ax.transAxes,
            )
        )
        ax.text(
            i * width + width / 2,
            0.5,
            text,
            ha="center",
            va="center",
            fontsize=15,
            color="white",
            weight="bold",
            transform=ax.transAxes,
        )
        ax.text(
            i * width + width / 2,
            0.15,
            s.name,
            ha="center",
            va="center",
            fontsize=7,
            color="white",
            transform=ax.transAxes,
        )


def draw_heatmap(ax: Axes, series: Sequence[Series]) -> None:
    """Cumulative `le` buckets -> the rate in each bucket, over time."""
    buckets = sorted(
        (float(s.name), s)
        for s in series
        if s.name.replace(".", "", 1).isdigit() or s.name == "+Inf"
    )
    if not buckets:
        return
    times = buckets[0][1].times
    by_time = [{t: v for t, v in zip(s.times, s.values, strict=True)} for _, s in buckets]
    rows = []
    for i in range(len(buckets)):
        below = by_time[i - 1] if i else {}
        rows.append([max(0.0, by_time[i].get(t, 0.0) - below.get(t, 0.0)) for t in times])
    edges = [0.0] + [b for b, _ in buckets]
    labels = [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(buckets))]
    ax.imshow(
        rows,
        aspect="auto",
        origin="lower",
        cmap="Blues",
        extent=(mdates.date2num(times[0]), mdates.date2num(times[-1]), 0, len(rows)),
        interpolation="nearest",
    )
    ax.set_yticks([i + 0.5 for i in range(len(labels))], labels, fontsize=6)
    ax.xaxis_date()


def render(
    dashboard: dict[str, Any],
    prometheus: str,
    start: float,
    end: float,
    step: float,
    rate_interval: str,
    out: Path,
) -> list[str]:
    """Draw every panel; returns the titles of panels that had no data."""
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height_in = rows * ROW_IN + HEADER_IN
    fig = plt.figure(figsize=(WIDTH_IN, height_in), facecolor="#f4f5f5")
    period = (
        f"{datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M}"
        f" to {datetime.fromtimestamp(end, UTC):%H:%M} UTC"
    )
    fig.suptitle(
        f"{dashboard['title']}  ({period}, Prometheus at {prometheus})", fontsize=15, y=0.995
    )

    def place(panel: dict[str, Any]) -> Axes:
        # Grafana's grid: 24 columns, rows from the top; each panel keeps room for its title
        # above, y labels left, x labels below (a right axis, when it has one, right).
        pos, kind = panel["gridPos"], panel["type"]
        pad = dict(PAD_IN)
        if kind in ("row", "stat"):
            pad = {"left": 0.1, "right": 0.1, "top": 0.3 if kind == "stat" else 0.0, "bottom": 0.1}
        elif _has_right_axis(panel):
            pad["right"] = 0.8
        column_in = WIDTH_IN / GRID_COLUMNS
        left = pos["x"] * column_in + pad["left"]
        width = pos["w"] * column_in - pad["left"] - pad["right"]
        top = HEADER_IN + pos["y"] * ROW_IN + pad["top"]
        height = pos["h"] * ROW_IN - pad["top"] - pad["bottom"]
        bottom = height_in - top - height
        return fig.add_axes(
            (left / WIDTH_IN, bottom / height_in, width / WIDTH_IN, height / height_in)
        )

    empty = []
    with httpx.Client(base_url=prometheus, timeout=30) as http:
        for panel in panels:
            ax = place(panel)
            if panel["type"] == "row":
                ax.set_axis_off()
                ax.text(0, 0.2, panel["title"], fontsize=14, weight="bold", transform=ax.transAxes)
                continue
            ax.set_title(panel["title"], fontsize=10, loc="left", weight="bold")
            series = panel_series(http, panel, start, end, step, rate_interval)
            if not series:
                empty.append(panel["title"])
                ax.text(
                    0.5,
                    0.5,
                    "no data",
                    ha="center",
                    va="center",
                    color="grey",
                    transform=ax.transAxes,
                )
            if panel["type"] == "stat":
                draw_stat(ax, panel, series)
                continue
            if panel["type"] == "heatmap":
                draw_heatmap(ax, series)
            else:
                draw_timeseries(ax, panel, series)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
            low, high = ax.get_ylim()
            counts = _defaults(panel).get("unit") != "percentunit"  # ratios keep their scale
            if panel["type"] != "heatmap" and counts and low >= 0 and "min" not in _defaults(panel):
                ax.set_ylim(0, high * 1.05 if high > 0 else 1)  # counts and times from zero
            ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
            ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)
    return empty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--start", required=True, help="epoch seconds or ISO 8601")
    parser.add_argument("--end", required=True, help="epoch seconds or ISO 8601")
    parser.add_argument("--step", type=float, default=5.0, help="seconds between points")
    parser.add_argument("--rate-interval", default="30s", help="stands for $__rate_interval")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "monitoring" / "dashboard.png")
    args = parser.parse_args(argv)
    dashboard = json.loads(args.dashboard.read_text())
    start, end = parse_time(args.start), parse_time(args.end)
    empty = render(dashboard, args.prometheus, start, end, args.step, args.rate_interval, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    if empty:
        print(f"panels without data: {', '.join(empty)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
