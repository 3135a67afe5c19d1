"""Dashboards, alert rules and log shipping refer only to what the services produce.

The metric names come from the code: every Counter, Gauge, Histogram, Summary and Info
that services/ and libs/ define with prometheus_client, expanded into the series names
prometheus_client exposes. Every PromQL expression of the Grafana dashboards and the
alert rules may use only those, plus Prometheus's own ``up``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from typing import Any

import orjson
import pytest
import yaml

from tests.deploy.kube import ROOT, one, render

PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
LOKI = ROOT / "deploy" / "loki"
DASHBOARDS = ("overview", "cost", "providers", "cache")
# Series Prometheus itself writes for every target.
PROMETHEUS_SERIES = {"up"}
METRIC_TYPES = {"Counter", "Gauge", "Histogram", "Summary", "Info"}

# PromQL words that are not metric names: functions are caught by the "(" after them.
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


def _defined_metrics() -> dict[str, str]:
    """Return {name as written: type} of every prometheus_client metric in services/ and libs/."""
    metrics = {}
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("libs/*.py")]:
        tree = ast.parse(path.read_text(), filename=str(path))
        # Only names imported from prometheus_client: collections.Counter is common too.
        imported = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
            for alias in node.names
            if alias.name in METRIC_TYPES
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported):
                continue
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                metrics[node.args[0].value] = node.func.id
    return metrics


def _exported_series(metrics: dict[str, str]) -> set[str]:
    """Expand metric names into the series names prometheus_client exposes."""
    series = set()
    for name, kind in metrics.items():
        if kind == "Counter":
            base = name.removesuffix("_total")
            series |= {f"{base}_total", f"{base}_created"}
        elif kind == "Histogram":
            series |= {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "Summary":
            series |= {name, f"{name}_sum", f"{name}_count", f"{name}_created"}
        elif kind == "Info":
            series.add(f"{name}_info")
        else:
            series.add(name)
    return series


EXPORTED = _exported_series(_defined_metrics()) | PROMETHEUS_SERIES


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors, Grafana's [$__range] too
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def _balanced(expr: str) -> bool:
    depth = 0
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', "", expr):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_metric_collection_finds_the_services_metrics() -> None:
    metrics = _defined_metrics()

    assert metrics["aigw_grpc_server_requests_total"] == "Counter"
    assert metrics["aigw_grpc_server_request_duration_seconds"] == "Histogram"
    assert metrics["aigw_metering_outbox_rows"] == "Gauge"
    assert "aigw_grpc_server_request_duration_seconds_bucket" in EXPORTED


def test_metric_names_parse_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (grpc_service, le) (rate(a_seconds_bucket{x="y",z=~"a|b"}[5m])))'
        " / on (pod) group_left sum without (le) (increase(b_total[$__range])) > bool 0.5"
    )

    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}


def _dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text()))


def _datasource_uids() -> dict[str, str]:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yaml").read_text())
    return {source["uid"]: source["type"] for source in provisioned["datasources"]}


def _migration_columns() -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    for path in ROOT.glob("services/*/migrations/*.sql"):
        for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", path.read_text(), re.S):
            lines = [line.strip() for line in match.group(2).splitlines()]
            tables[match.group(1)] = {line.split()[0] for line in lines if line and not line.startswith("--")}
    return tables


SQL_WORDS = {
    "select", "from", "where", "group", "by", "order", "desc", "asc", "limit", "as", "sum", "count", "and",
    "or", "not", "metric", "value",
}  # fmt: skip


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_queries_use_exported_metrics(name: str) -> None:
    dashboard = _dashboard(name)
    uids = _datasource_uids()
    tables = _migration_columns()
    # A variable's label_values(METRIC, LABEL) selects METRIC.
    prometheus_queries = [
        re.sub(r"^label_values\((\w+),\s*\w+\)$", r"\1", variable["definition"])
        for variable in dashboard["templating"]["list"]
        if variable["datasource"]["uid"] == "prometheus"
    ]

    assert dashboard["uid"] == f"aigw-{name}"
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            uid = target["datasource"]["uid"]
            assert uid in uids, (panel["title"], uid)
            if uids[uid] == "prometheus":
                prometheus_queries.append(target["expr"])
                continue
            sql = re.sub(r"\$__\w+\([^)]*\)", "", target["rawSql"])
            (table,) = re.findall(r"\bFROM\s+(\w+)", sql, re.I)
            aliases = set(re.findall(r"\bAS\s+(\w+)", sql, re.I))
            words = {w for w in re.findall(r"[A-Za-z_]\w*", sql) if w.lower() not in SQL_WORDS} - aliases - {table}
            assert table in tables, panel["title"]
            assert words <= tables[table], (panel["title"], words - tables[table])
    for expr in prometheus_queries:
        assert _balanced(expr), expr
        assert metric_names(expr), expr
        assert metric_names(expr) <= EXPORTED, (expr, metric_names(expr) - EXPORTED)


def test_dashboard_panels_have_unique_ids() -> None:
    for name in DASHBOARDS:
        ids = [panel["id"] for panel in _dashboard(name)["panels"]]
        assert len(ids) == len(set(ids)), name


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_use_exported_metrics() -> None:
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert _balanced(rule["expr"]), rule["alert"]
        assert names, rule["alert"]
        assert names <= EXPORTED, (rule["alert"], names - EXPORTED)
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def test_alert_rules_cover_the_failure_modes() -> None:
    metrics_by_alert = {rule["alert"]: metric_names(rule["expr"]) for rule in _rules()}

    assert "aigw_grpc_server_requests_total" in metrics_by_alert["AigwHighErrorRate"]
    assert "aigw_grpc_server_request_duration_seconds_bucket" in metrics_by_alert["AigwInternalRpcSlow"]
    assert "aigw_provider_latency_seconds_bucket" in metrics_by_alert["AigwProviderSlow"]
    assert "aigw_budget_rejections_total" in metrics_by_alert["AigwBudgetRejections"]
    assert "aigw_provider_attempts_total" in metrics_by_alert["AigwProviderFailures"]
    assert metrics_by_alert["AigwCacheDown"] == {"up"}
    assert 'service="cache"' in next(r["expr"] for r in _rules() if r["alert"] == "AigwCacheDown")


def test_scrape_config_matches_the_pods() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    port_label = ["__meta_kubernetes_pod_container_port_name"]
    port_rule = next(r for r in job["relabel_configs"] if r["source_labels"] == port_label)
    resources = render("dev")

    for name in ("router", "security", "cache", "metering", "edge"):
        deployment = one(resources, "Deployment", name)
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
        scraped = [n for n in ports if re.fullmatch(port_rule["regex"], n)]
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aigateway", name
        assert annotations["prometheus.io/scrape"] == "true", name
        assert len(scraped) == 1, (name, ports)
        assert annotations["prometheus.io/port"] == str(ports[scraped[0]]), name


def test_dev_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    resources = render("dev")
    prometheus = one(resources, "Deployment", "prometheus")
    (container,) = prometheus["spec"]["template"]["spec"]["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    rules = one(resources, "ConfigMap", "prometheus-rules")

    assert config["rule_files"] == [f"{mounts['rules']}/*.yml"]
    assert list(rules["data"]) == ["alerts.yml"]
    assert len(one(resources, "ConfigMap", "grafana-dashboards")["data"]) == len(DASHBOARDS)


def _log_line(**ids: str) -> dict[str, Any]:
    from libs import logs

    request_token = logs.request_id_var.set(ids.get("request_id", ""))
    trace_token = logs.trace_id_var.set(ids.get("trace_id", ""))
    try:
        record = logging.LogRecord("services.router", logging.INFO, __file__, 1, "rpc finished", None, None)
        return dict(orjson.loads(logs.JsonFormatter("router").format(record)))
    finally:
        logs.request_id_var.reset(request_token)
        logs.trace_id_var.reset(trace_token)


def test_promtail_reads_the_log_fields() -> None:
    config = yaml.safe_load((LOKI / "promtail.yaml").read_text())
    (job,) = config["scrape_configs"]
    stages = {next(iter(stage)): stage[next(iter(stage))] for stage in job["pipeline_stages"]}
    line = _log_line(request_id="r-1", trace_id="0af7651916cd43dd8448eb211c80319c")

    assert set(stages["json"]["expressions"].values()) <= set(line)
    assert {"request_id", "trace_id"} <= set(stages["json"]["expressions"])
    # Ids would create a stream per request: they must stay out of the labels.
    assert set(stages["labels"]) == {"level", "service"}
    assert set(stages["structured_metadata"]) == {"request_id", "trace_id"}
    assert stages["timestamp"]["source"] == "time"


def test_loki_accepts_structured_metadata() -> None:
    config = yaml.safe_load((LOKI / "loki.yaml").read_text())

    assert config["limits_config"]["allow_structured_metadata"] is True
    assert config["schema_config"]["configs"][0]["schema"] == "v13"
