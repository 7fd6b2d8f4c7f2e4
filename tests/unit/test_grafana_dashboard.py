"""The Grafana dashboard under deploy/ asks only for series the control plane exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from controlplane.telemetry import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "flare-gpus.json"
FUNCTIONS = {"or"}  # operators that read like names


def exported() -> set[str]:
    names = {name for name, *_ in metrics.GPU_FIELDS} | set(metrics.CONTROL_PLANE)
    names |= {metrics.XID_NAME, metrics.LAST_XID_NAME}
    names |= {"flare_placement_seconds_bucket"}
    return names | {f"{name}_total" for name in metrics.CONTROL_PLANE}


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    asked = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Metric names: whole identifiers not called as functions, outside label
            # matchers, strings, ranges and by (...) groupings.
            expression = re.sub(
                r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]|\b(?:by|without)\s*\([^)]*\)', "", target["expr"]
            )
            for name in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()", expression):
                if name not in FUNCTIONS and not name.isdigit():
                    asked.add(name)
    assert asked, "the dashboard queries nothing"
    assert asked <= exported(), asked - exported()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
