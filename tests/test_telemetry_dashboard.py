"""The Grafana dashboard in docs/ is valid JSON and queries only metrics meshplane exports
(and every golden signal at least once)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from meshplane.telemetry import METRIC_NAMES
from meshplane.telemetry.exposition import EDGE_LABELS

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-golden-signals.json"
_SUFFIXES = ("_bucket", "_sum", "_count")


def _exported(name: str) -> bool:
    if name in METRIC_NAMES:
        return True
    return any(name.endswith(s) and name[: -len(s)] in METRIC_NAMES for s in _SUFFIXES)


def test_the_dashboard_queries_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    used = {m for e in exprs for m in re.findall(r"\bmeshplane_[a-z_]+", e)}
    assert used and all(_exported(m) for m in used), sorted(m for m in used if not _exported(m))
    bases = {m.removesuffix(s) for m in used for s in _SUFFIXES if m.endswith(s)} | used
    assert set(METRIC_NAMES) <= bases, sorted(set(METRIC_NAMES) - bases)
    labels = {
        label for e in exprs for label in re.findall(r"\b([a-z_]+)\s*(?:=|!=|=~)\s*\"", e)
    } | {
        label
        for e in exprs
        for group in re.findall(r"by \(([^)]*)\)", e)
        for label in (x.strip() for x in group.split(","))
    }
    known = {*EDGE_LABELS, "response_code_class", "le", "kind", "proxy", "instance"}
    assert labels <= known, sorted(labels - known)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
