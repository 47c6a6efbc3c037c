"""The deployment files of docker/, read as Docker and Compose would read
them (no Docker engine runs here), and the production settings they rely on.
"""

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.conf import settings

from tests.bots.hostile_server import free_port
from tests.docker.conftest import (
    DOCKER_DIR,
    PROJECT_ROOT,
    app_env_names,
    gunicorn_env_names,
    production_env,
)

DOCKERFILE = DOCKER_DIR / "Dockerfile"
COMPOSE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
GRAFANA_DIR = DOCKER_DIR / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "botfactory.json"
GUNICORN_CONF = "docker/gunicorn.conf.py"
REQUIRED_SERVICES = {
    "migrate",
    "web",
    "worker",
    "beat",
    "postgres",
    "redis",
    "prometheus",
    "grafana",
}
APP_SERVICES = ("web", "worker", "llm-worker", "beat")
_SERVER_START_SECONDS = 60.0
# Top-level folders of the repository that the running app does not need.
_NOT_SHIPPED = {"tests", "bench", "docs", "docker", "data", "tools"}


def _instructions(path: Path) -> list[tuple[str, str]]:
    """Return a Dockerfile's (instruction, arguments) pairs, lines joined."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert pending == ""

    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (entry.partition(" ") for entry in logical)
    ]


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)

    return stages


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")))


def _words(command: Any) -> list[str]:
    return command if isinstance(command, list) else str(command).split()


# --- Dockerfile ---------------------------------------------------------------


def test_dockerfile_builds_in_stages_and_runs_as_a_non_root_user() -> None:
    stages = _stages(_instructions(DOCKERFILE))

    assert len(stages) >= 2
    names = [re.search(r"\bAS (\w+)$", stage[0][1], re.I) for stage in stages]
    assert all(names), "every stage is named"
    final = stages[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert len(users) == 1
    user = users[0].split(":")[0]
    assert user not in {"root", "0"}
    # Nothing after USER runs as root again.
    assert [keyword for keyword, _ in final].index("USER") > max(
        index for index, (keyword, _) in enumerate(final) if keyword == "RUN"
    )
    # The final stage copies from the build stage instead of building.
    assert any(
        keyword == "COPY" and "--from=build" in arguments
        for keyword, arguments in final
    )


def test_dockerfile_copies_files_that_exist_and_every_package_of_the_app() -> None:
    instructions = _instructions(DOCKERFILE)
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = {
        line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")
    }

    sources = []
    for keyword, arguments in instructions:
        if keyword != "COPY" or "--from=" in arguments:
            continue
        *copied, _destination = arguments.split()
        sources.extend(copied)

    assert sources
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is ignored by the build"
    packages = {
        path.parent.name
        for path in PROJECT_ROOT.glob("*/__init__.py")
        if path.parent.name not in _NOT_SHIPPED
    }
    assert packages - set(sources) == set()
    assert {"manage.py", "templates", "requirements.lock", GUNICORN_CONF} <= set(
        sources
    )


def test_dockerfile_collects_static_files_and_starts_the_production_gunicorn() -> None:
    instructions = _instructions(DOCKERFILE)
    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    commands = [arguments for keyword, arguments in instructions if keyword == "CMD"]

    assert any("manage.py collectstatic --no-input" in run for run in runs)
    assert any("--require-hashes" in run and "requirements.lock" in run for run in runs)
    assert [json.loads(command) for command in commands] == [
        ["gunicorn", "-c", GUNICORN_CONF]
    ]
    assert (PROJECT_ROOT / GUNICORN_CONF).is_file()


# --- compose file --------------------------------------------------------------


def test_compose_file_has_every_service_of_a_deployment() -> None:
    services = _compose()["services"]

    assert set(services) >= REQUIRED_SERVICES
    assert _words(services["web"]["command"]) == ["gunicorn", "-c", GUNICORN_CONF]
    assert _words(services["migrate"]["command"]) == [
        "python",
        "manage.py",
        "migrate",
        "--no-input",
    ]
    assert services["migrate"]["restart"] == "no"
    assert _words(services["beat"]["command"])[:4] == [
        "celery",
        "-A",
        "botfactory",
        "beat",
    ]
    for name in ("worker", "llm-worker"):
        assert _words(services[name]["command"])[:4] == [
            "celery",
            "-A",
            "botfactory",
            "worker",
        ]


def test_compose_runs_the_app_after_the_migration_with_the_shipped_image() -> None:
    services = _compose()["services"]
    queues = set()

    for name in ("migrate", *APP_SERVICES):
        service = services[name]
        build = service["build"]
        assert (DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == (
            DOCKERFILE
        )
        assert service["env_file"] == ".env"
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }
        command = _words(service["command"])
        if "-Q" in command:
            queues.update(command[command.index("-Q") + 1].split(","))

    # Every queue a task is routed to has a worker.
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert routed | {"celery"} <= queues


def test_compose_mounts_files_that_exist() -> None:
    services = _compose()["services"]

    mounts = [
        volume.split(":")
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]

    assert len(mounts) >= 4
    for source, *_ in mounts:
        assert (DOCKER_DIR / source).exists(), source


def test_prometheus_loads_the_alert_rules_and_scrapes_the_compose_services() -> None:
    prometheus = _compose()["services"]["prometheus"]
    mounted = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config_path = mounted["./prometheus/prometheus.yml"]
    config = yaml.safe_load(
        (DOCKER_DIR / "prometheus" / "prometheus.yml").read_text(encoding="utf-8")
    )

    rule_targets = {
        str(Path(config_path).parent / rule_file) for rule_file in config["rule_files"]
    }
    assert rule_targets == {mounted["./prometheus/alerts.yml"]}
    assert f"--config.file={config_path}" in prometheus["command"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"botfactory-web", "botfactory-worker"}
    services = set(_compose()["services"])
    for job in jobs.values():
        for discovery in job["dns_sd_configs"]:
            assert set(discovery["names"]) <= services


def test_grafana_is_provisioned_with_the_datasource_and_the_dashboard() -> None:
    grafana = _compose()["services"]["grafana"]
    mounted = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning = GRAFANA_DIR / "provisioning"
    datasources = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    providers = yaml.safe_load(
        (provisioning / "dashboards" / "botfactory.yml").read_text(encoding="utf-8")
    )["providers"]

    assert mounted["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert [source["url"] for source in datasources] == ["http://prometheus:9090"]
    assert [provider["options"]["path"] for provider in providers] == [
        mounted["./grafana/dashboards"]
    ]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {datasources[0]["uid"]}


def test_dashboard_panels_chart_every_metric_of_the_contract_and_no_other(
    known_series: frozenset[str],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    used = {
        name
        for expr in expressions
        for name in re.findall(r"\b((?:botfactory|django)_[a-z0-9_]+|up)\b", expr)
    }
    contract = {name for name in known_series if name.startswith("botfactory_")}
    # A histogram counts as charted through any of its series.
    charted = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}

    assert used - known_series == set()
    assert {re.sub(r"_(bucket|sum|count)$", "", name) for name in contract} - (
        charted
    ) == set()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(
        dashboard["panels"]
    )
    assert all(panel["title"] for panel in panels)


# --- environment --------------------------------------------------------------


def test_env_example_lists_every_variable_the_app_reads() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    compose_variables = set(
        re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8"))
    )

    assert len(app_env_names()) >= 40
    assert app_env_names() - listed == set()
    assert gunicorn_env_names() - listed == set()
    assert compose_variables - listed == set()


def test_env_example_sets_no_secret() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    values = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))

    for name in (
        "SECRET_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        assert values[name] == "", name
    assert values["DEBUG"] == "0"


# --- production settings -------------------------------------------------------


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _deploy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return production_env(
        tmp_path,
        ALLOWED_HOSTS="bots.example.com",
        CSRF_TRUSTED_ORIGINS="https://bots.example.com",
        **extra,
    )


def test_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = _manage(
        _deploy_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize(
    ("extra", "warning"),
    [
        ({"SECRET_KEY": "short-but-set"}, "security.W009"),
        ({"SECURE_SSL_REDIRECT": "0"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
    ],
)
def test_check_deploy_fails_when_a_production_setting_is_weakened(
    tmp_path: Path, extra: dict[str, str], warning: str
) -> None:
    result = _manage(
        _deploy_env(tmp_path, **extra), "check", "--deploy", "--fail-level", "WARNING"
    )

    assert result.returncode == 1
    assert re.findall(r"\((security\.W\d+)\)", result.stderr) == [warning]


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """gunicorn with the shipped config and collected static files, DEBUG off."""
    static_root = tmp_path / "static"
    (tmp_path / "metrics").mkdir()
    env = production_env(
        tmp_path,
        ALLOWED_HOSTS="127.0.0.1",
        STATIC_ROOT=str(static_root),
        WEB_CONCURRENCY="1",
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    collected = _manage(env, "collectstatic", "--no-input")
    assert collected.returncode == 0, collected.stderr

    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://{env['GUNICORN_BIND']}"
    try:
        deadline = time.monotonic() + _SERVER_START_SECONDS
        while True:
            assert process.poll() is None, "gunicorn exited"
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield url, static_root
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_admin_is_styled_without_debug(
    production_server: tuple[str, Path],
) -> None:
    url, static_root = production_server
    behind_tls = {"X-Forwarded-Proto": "https"}

    page = httpx.get(f"{url}/admin/login/", headers=behind_tls, timeout=10.0)
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    styles = [
        httpx.get(f"{url}{href}", headers=behind_tls, timeout=10.0)
        for href in stylesheets
    ]

    assert page.status_code == 200
    assert "/static/admin/css/base.css" in stylesheets
    for href, style in zip(stylesheets, styles, strict=True):
        assert style.status_code == 200, href
        assert style.headers["content-type"].startswith("text/css"), href
        assert (
            style.content == (static_root / href.removeprefix("/static/")).read_bytes()
        )
