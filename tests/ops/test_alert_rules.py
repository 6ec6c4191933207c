"""The alert rules pass `promtool check rules` and their unit tests (tests/ops/alerts), and
every alert is documented, tested firing and tested silent.

promtool comes from Debian's `prometheus` package, which .ci/run installs. Without it these
tests fail rather than skip: rules nobody checked must not pass CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from payrail.ops.alerts import rule_files

ROOT = Path(__file__).parents[2]
TESTS = Path(__file__).parent / "alerts"
RUNBOOKS = ROOT / "docs" / "alerts.md"


def promtool(*args: str) -> None:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not on PATH: install Debian's `prometheus` package"
            " (apt-get install prometheus), as .ci/run does"
        )
    done = subprocess.run(
        [found, *args], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def unit_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test case in the promtool test files."""
    return [
        case
        for path in sorted(TESTS.glob("*.test.yml"))
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_the_rules_files_are_valid() -> None:
    assert [p.name for p in rule_files()] == ["payments.rules.yml", "recon.rules.yml"]
    promtool("check", "rules", *(str(p) for p in rule_files()))


@pytest.mark.parametrize("path", sorted(TESTS.glob("*.test.yml")), ids=lambda p: p.name)
def test_the_rules_pass_their_promtool_unit_tests(path: Path) -> None:
    promtool("test", "rules", str(path))


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases = unit_tests()
    for alert in alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name} is never tested firing"
        assert any(not c["exp_alerts"] for c in mine), f"{name} is never tested silent"


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    headings = re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    names = [alert["alert"] for alert in alerts()]
    assert sorted(headings) == sorted(names)
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("page", "ticket"), name
        notes = alert["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook"] == f"docs/alerts.md#{name.lower()}"
