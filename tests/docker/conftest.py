import os
import re
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = PROJECT_ROOT / "docker"
# Where `make deps` unpacks Debian's promtool; PROMTOOL names another one.
DEFAULT_PROMTOOL = PROJECT_ROOT / "tools" / "prometheus" / "usr" / "bin" / "promtool"

# Series that Prometheus and django-prometheus expose besides the project's
# own metrics.
OTHER_SERIES = frozenset(
    {
        "up",
        "django_http_responses_total_by_status_total",
        "django_http_requests_total_by_method_total",
        "django_http_requests_latency_seconds_by_view_method_bucket",
    }
)
FERNET_KEY = "2Rr1p3G7cLGbn2qUsf7hR7bx9k3bgkX2h5H6m3vJxVw="
# Long and varied enough for check --deploy (50 characters, 5 different).
SECRET_KEY = "test-only-secret-key-" + "0123456789abcdef" * 3
_SUFFIXES = {
    "Counter": ("_total",),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
}


def _contract_series() -> set[str]:
    """Return every series name that botfactory/metrics.py puts on /metrics."""
    source = (PROJECT_ROOT / "botfactory" / "metrics.py").read_text(encoding="utf-8")
    series: set[str] = set()
    for kind, name in re.findall(r"\b(Counter|Gauge|Histogram)\(\s*\"(\w+)\"", source):
        series.update(name + suffix for suffix in _SUFFIXES[kind])

    return series


def app_env_names() -> set[str]:
    """Return every variable the project's settings helpers read."""
    names: set[str] = set()
    for path in (PROJECT_ROOT / "botfactory").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        names.update(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"', source))

    return names


def gunicorn_env_names() -> set[str]:
    """Return every variable docker/gunicorn.conf.py reads."""
    source = (DOCKER_DIR / "gunicorn.conf.py").read_text(encoding="utf-8")

    return set(re.findall(r'(?:_env_int|environ\.get)\(\s*"([A-Z][A-Z0-9_]*)"', source))


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment as in production: DEBUG off, secrets set, no .env.

    Nothing of the test run's own settings is inherited, so the project's
    defaults apply unless ``extra`` says otherwise.
    """
    dropped = app_env_names() | gunicorn_env_names()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and name.removesuffix("_FILE") not in dropped
    }
    env.update(
        {
            "DOTENV_PATH": os.devnull,
            "DATA_DIR": str(tmp_path / "data"),
            "SECRET_KEY": SECRET_KEY,
            "FIELD_ENCRYPTION_KEYS": FERNET_KEY,
            **extra,
        }
    )

    return env


@pytest.fixture(scope="session")
def known_series() -> frozenset[str]:
    """Series names a rule or a dashboard panel may use."""
    return frozenset(_contract_series()) | OTHER_SERIES


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary; missing means `make deps` was not run."""
    path = Path(os.environ.get("PROMTOOL") or DEFAULT_PROMTOOL)
    assert os.access(path, os.X_OK), f"{path} is missing: run `make deps`"

    return str(path)
