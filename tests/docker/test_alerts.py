"""The Prometheus alert rules, their unit tests, the runbook and the config."""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.conftest import DOCKER_DIR, PROJECT_ROOT

PROMETHEUS_DIR = DOCKER_DIR / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
RUNBOOK = PROJECT_ROOT / "docs" / "runbook.md"

LLM_ALERTS = {
    "BotfactoryLLMErrorRatio",
    "BotfactoryLLMSlow",
    "BotfactoryLLMCircuitBreakerOpen",
    "BotfactoryLLMCacheHitRatioLow",
    "BotfactoryLLMTokenSpendRising",
}
# What the operations issue asks the rules to cover, by the metric each
# one must watch.
REQUIRED_COVERAGE = {
    "web down": 'up{job="botfactory-web"}',
    "worker down": 'up{job="botfactory-worker"}',
    "database unavailable": 'botfactory_dependency_up{dependency="database"}',
    "redis unavailable": 'botfactory_dependency_up{dependency="redis"}',
    "5xx ratio": "django_http_responses_total_by_status_total",
    "webhook p95": "botfactory_webhook_duration_seconds_bucket",
    "rejected webhooks": "botfactory_webhook_rejected_total",
    "duplicate deliveries": "botfactory_duplicate_updates_total",
    "outbox backlog": "botfactory_outbox_backlog",
    "oldest unsent reply": "botfactory_outbox_oldest_unsent_age_seconds",
    "telegram 429": 'error_code="429"',
    "telegram failures": 'result="failed"',
    "celery queue": "botfactory_celery_queue_length",
    "no worker alive": "botfactory_celery_workers_alive",
}
_SERIES_RE = re.compile(r"\b((?:botfactory|django)_[a-z0-9_]+|up)\b")


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))

    return [rule for group in document["groups"] for rule in group["rules"]]


def _heading_anchors(markdown: str) -> set[str]:
    """Return the anchors GitHub gives the headings of a Markdown text."""
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)

    return anchors


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", "alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", "alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].strip() == "SUCCESS"


def test_promtool_accepts_the_prometheus_config(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", "prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_rule_tests_fail_when_a_threshold_moves(
    promtool: str, tmp_path: Path
) -> None:
    # Given the rules with the 5xx line moved from 5 % to 50 %
    rules = RULES.read_text(encoding="utf-8")
    moved = rules.replace(
        "            > 0.05\n        for: 5m", "            > 0.5\n        for: 5m"
    )
    assert moved != rules
    (tmp_path / "alerts.yml").write_text(moved, encoding="utf-8")
    (tmp_path / "alerts.test.yml").write_text(
        RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8"
    )

    # When the unit tests run against them
    result = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then the firing case of that alert fails, and only that one
    assert result.returncode == 1
    failed = re.findall(r"alertname: (\w+), time", result.stdout + result.stderr)
    assert failed == ["BotfactoryHigh5xxRatio"]


def test_every_alert_has_severity_summary_and_a_runbook_section() -> None:
    anchors = _heading_anchors(RUNBOOK.read_text(encoding="utf-8"))

    for rule in _alerts():
        name = rule["alert"]
        assert set(rule["labels"]) == {"severity"}, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) == {"summary", "runbook_url"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        assert name.lower() in anchors, name


def test_the_runbook_has_a_section_for_each_alert_and_no_other() -> None:
    markdown = RUNBOOK.read_text(encoding="utf-8")
    sections = re.findall(r"^## (Botfactory\w+)$", markdown, flags=re.MULTILINE)

    assert sorted(sections) == sorted(rule["alert"] for rule in _alerts())


def test_there_are_at_least_13_alerts_besides_the_llm_ones() -> None:
    names = [rule["alert"] for rule in _alerts()]

    assert len(names) == len(set(names))
    assert set(names) >= LLM_ALERTS
    assert len(set(names) - LLM_ALERTS) >= 13


@pytest.mark.parametrize("topic", sorted(REQUIRED_COVERAGE))
def test_a_rule_covers(topic: str) -> None:
    needle = REQUIRED_COVERAGE[topic]
    # Selectors are compared without the spaces between their matchers.
    expressions = [re.sub(r",\s+", ",", rule["expr"]) for rule in _alerts()]

    assert any(needle in expr for expr in expressions)


def test_rules_use_only_metric_names_of_the_contract(
    known_series: frozenset[str],
) -> None:
    used = {name for rule in _alerts() for name in _SERIES_RE.findall(rule["expr"])}

    assert used - known_series == set()
    assert len(used) >= 15


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    document = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in document["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])

    names = {rule["alert"] for rule in _alerts()}
    assert document["rule_files"] == ["alerts.yml"]
    assert names - firing == set()
    assert names - quiet == set()
    assert (firing | quiet) - names == set()


def test_the_readme_lists_every_alert() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    operations = readme[readme.index("## Operations") :]

    assert [
        rule["alert"] for rule in _alerts() if f"`{rule['alert']}`" not in operations
    ] == []
