"""What k8s/monitoring ships for Prometheus and Grafana: the alert rules pass
`promtool check rules` and their unit tests (`promtool test rules`), and the
dashboard is Grafana JSON whose every query is valid PromQL (checked by
promtool as recording rules). test_metrics.py checks that every metric they
name is one a node serves."""

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k8s" / "monitoring"
RULES = MONITORING / "meshwire-alerts.yaml"
DASHBOARD = MONITORING / "meshwire-dashboard.json"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def metric_names(exprs) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\bmeshwire_[a-z_]+", e)}


def rule_exprs() -> list[str]:
    import yaml
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_the_alert_rules_pass_promtool_and_their_unit_tests():
    check = promtool("check", "rules", str(RULES))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 13 rules found" in check.stdout
    tests = Path(__file__).parent / "monitoring"
    unit = promtool("test", "rules", "alerts_test.yaml", cwd=tests)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_says_what_to_do():
    import yaml
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:
            assert r["alert"].startswith("Meshwire") and r["labels"]["severity"] in {"warning", "critical"}, r
            assert r["annotations"]["summary"] and len(r["annotations"]["description"]) > 40, r


def test_the_dashboard_is_grafana_json_and_its_queries_are_promql(tmp_path):
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert p["title"] and p["targets"] and {"h", "w", "x", "y"} <= set(p["gridPos"]), p
    # Grafana's variables replaced, each query becomes a recording rule that
    # promtool parses.
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, e in enumerate(dashboard_queries()):
        e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
        rules += [f"      - record: meshwire:dashboard_query_{i}", f"        expr: {json.dumps(e)}"]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text("\n".join(rules) + "\n")
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert metric_names(dashboard_queries()) >= {"meshwire_dataplane_up", "meshwire_peer_up",
                                                 "meshwire_service_connections_total"}
