"""docs/prometheus/cplow-rules.yml and docs/grafana/cplow.json against what cplow exports.

- `promtool check rules` accepts the rules; `promtool test rules` runs
  tests/prometheus/cplow-rules.test.yml, in which every alert fires on synthetic series and
  clears again (checked here from both files), and a broken rule makes it fail;
- every metric the rules and the dashboard's queries name is one a live /metrics serves (the
  real dashboard role on a ledger tests/tools/dashboard_fill fills), or Prometheus's own `up`;
- the dashboard shows quota per account, upload rate, stages, the ledger file's age and failures.
promtool is the one scripts/setup extracts from Debian's prometheus package: missing, the tests
fail rather than skip.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.request

import yaml

from harness import ROOT, DashboardFill
from test_metrics_promtool import PROMTOOL

RULES = os.path.join(ROOT, "docs", "prometheus", "cplow-rules.yml")
RULE_TESTS = os.path.join(ROOT, "tests", "prometheus", "cplow-rules.test.yml")
DASHBOARD = os.path.join(ROOT, "docs", "grafana", "cplow.json")
# What PromQL says beside metric names.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan"}


def promtool(*args, cwd=None):
    if not os.access(PROMTOOL, os.X_OK):
        raise AssertionError("promtool is not at %s: run scripts/setup" % PROMTOOL)
    p = subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True, timeout=60,
                       cwd=cwd)
    return p.returncode, p.stdout + p.stderr


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in KEYWORDS}


def dashboard_queries(dash):
    """Every PromQL expression of the dashboard: panel targets and template variable queries
    (label_values(METRIC{...}, label) reads METRIC)."""
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
        if m:
            exprs.append(m.group(1))
    return exprs


def rule_alerts():
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r]


class RulesTest(unittest.TestCase):
    def test_promtool_checks_the_rules(self):
        rc, out = promtool("check", "rules", RULES)
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS: %d rules found" % len(rule_alerts()), out)

    def test_promtool_unit_tests_pass(self):
        rc, out = promtool("test", "rules", os.path.basename(RULE_TESTS),
                           cwd=os.path.dirname(RULE_TESTS))
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)

    def test_each_alert_fires_and_clears_in_the_unit_tests(self):
        """In one test group, an evaluation expects the alert and a later one expects none."""
        groups = load_yaml(RULE_TESTS)["tests"]
        minutes = lambda t: int(t.rstrip("m"))
        for alert in rule_alerts():
            name = alert["alert"]
            with self.subTest(alert=name):
                cleared_after_firing = False
                for g in groups:
                    evals = sorted((minutes(t["eval_time"]), bool(t["exp_alerts"]))
                                   for t in g["alert_rule_test"] if t["alertname"] == name)
                    fired = [t for t, f in evals if f]
                    if fired and any(not f and t > fired[0] for t, f in evals):
                        cleared_after_firing = True
                self.assertTrue(cleared_after_firing,
                                "no unit test makes %s fire and then clear" % name)

    def test_a_broken_rule_fails_the_unit_tests(self):
        # Or the passing run above proves nothing: CplowDown that never fires.
        tmp = tempfile.mkdtemp(prefix="test-monitoring-")
        try:
            os.makedirs(os.path.join(tmp, "docs", "prometheus"))
            os.makedirs(os.path.join(tmp, "tests", "prometheus"))
            with open(RULES) as f:
                rules = f.read()
            broken = rules.replace('up{job="cplow"} == 0', 'up{job="cplow"} == 2')
            self.assertNotEqual(broken, rules)
            with open(os.path.join(tmp, "docs", "prometheus", "cplow-rules.yml"), "w") as f:
                f.write(broken)
            shutil.copy(RULE_TESTS, os.path.join(tmp, "tests", "prometheus"))
            rc, out = promtool("test", "rules", os.path.basename(RULE_TESTS),
                               cwd=os.path.join(tmp, "tests", "prometheus"))
            self.assertNotEqual(rc, 0, out)
            self.assertIn("CplowDown", out)
        finally:
            shutil.rmtree(tmp)


class ExportedNamesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        fill = DashboardFill("/cplow-test-monitoring-%d" % os.getpid())
        try:
            with urllib.request.urlopen("http://127.0.0.1:%s/metrics" % fill.port,
                                        timeout=10) as r:
                text = r.read().decode()
        finally:
            rc = fill.stop()
        if rc != 0:
            raise AssertionError("dashboard_fill ended with %d" % rc)
        cls.exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
        with open(DASHBOARD) as f:
            cls.dashboard = json.load(f)

    def test_the_live_metrics_are_read(self):
        self.assertIn("cplow_account_used_bytes", self.exported)
        self.assertGreaterEqual(len(self.exported), 10)

    def test_the_name_reader_finds_names_and_only_names(self):
        self.assertEqual(metric_names('sum by (uploader) (rate(a_b{x="y z"}[5m])) / on(i) '
                                      "c > 0.9 and bool d offset 5m"), {"a_b", "c", "d"})

    def test_the_dashboard_reads_only_metrics_cplow_exports(self):
        exprs = dashboard_queries(self.dashboard)
        self.assertGreater(len(exprs), 10)
        for expr in exprs:
            with self.subTest(expr=expr):
                names = metric_names(expr)
                self.assertTrue(names, "no metric in %r" % expr)
                self.assertLessEqual(names, self.exported | {"up"})

    def test_the_rules_read_only_metrics_cplow_exports(self):
        for alert in rule_alerts():
            with self.subTest(alert=alert["alert"]):
                self.assertLessEqual(metric_names(alert["expr"]), self.exported | {"up"})

    def test_the_dashboard_shows_quota_rate_stages_flush_age_and_failures(self):
        used = set().union(*(metric_names(e) for e in dashboard_queries(self.dashboard)))
        for name in ("cplow_account_used_bytes", "cplow_account_quota_bytes",  # quota
                     "cplow_stage_speed_bytes", "cplow_session_bytes",         # upload rate
                     "cplow_stage_bytes_done",                                 # stages
                     "cplow_ledger_last_flush_age_seconds",                    # flush age
                     "cplow_account_banned", "cplow_process_restarts_total"):  # failures
            self.assertIn(name, used)

    def test_the_dashboard_is_importable(self):
        d = self.dashboard
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for p in d["panels"]:
            with self.subTest(panel=p["title"]):
                self.assertEqual(set(p["gridPos"]), {"x", "y", "w", "h"})
                self.assertLessEqual(p["gridPos"]["x"] + p["gridPos"]["w"], 24)
                self.assertEqual(p["datasource"]["uid"], "${datasource}")
        names = [v["name"] for v in d["templating"]["list"]]
        self.assertIn("datasource", names)


if __name__ == "__main__":
    unittest.main()
