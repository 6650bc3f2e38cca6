"""The Prometheus alert rules Postern ships (docs/prometheus/postern-alerts.yml) are valid,
fire when their unit tests say (promtool test rules with postern-alerts.test.yml: each alert
fires on its condition and stays quiet before it), and name only metrics that
docs/TELEMETRY.md documents (which test_telemetry_doc.py checks against the code), so a
renamed metric cannot leave an alert that never fires. promtool comes from Debian's
prometheus package, which tests/run installs."""

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "docs" / "prometheus" / "postern-alerts.yml"
TESTS = ROOT / "docs" / "prometheus" / "postern-alerts.test.yml"
DOC = ROOT / "docs" / "TELEMETRY.md"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (tests/run installs Debian's prometheus package)"
    out = subprocess.run([tool, *args], cwd=RULES.parent, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_the_rules_are_valid():
    assert "SUCCESS" in promtool("check", "rules", RULES.name)


def test_each_alert_fires_on_its_condition():
    assert "SUCCESS" in promtool("test", "rules", TESTS.name)


def test_every_alert_has_a_unit_test():
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)$", TESTS.read_text(), re.M))
    assert alerts, "no alerts found"
    assert not alerts - tested, f"alerts without a unit test: {sorted(alerts - tested)}"


def test_the_rules_name_only_documented_metrics():
    doc = DOC.read_text()
    documented = set(re.findall(r"`(postern_[a-z0-9_]+)`", doc))
    used = set(re.findall(r"\b(postern_[a-z0-9_]+)", RULES.read_text()))
    assert used, "no metrics found in the rules"
    missing = []
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        # Counters are documented as `postern_x` (`_total`), exposed as postern_x_total.
        candidates = {name, base, re.sub(r"_total$", "", name)}
        if not candidates & documented:
            missing.append(name)
    assert not missing, f"metrics in the alert rules that docs/TELEMETRY.md does not name: {missing}"
