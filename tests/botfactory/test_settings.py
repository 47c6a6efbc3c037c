"""Settings read from the environment, each case in a fresh interpreter."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
# Every variable the settings read, taken from their source so that the list
# cannot fall behind a new setting.
SETTING_NAMES = set(
    re.findall(
        r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"',
        (BASE_DIR / "botfactory" / "settings.py").read_text(encoding="utf-8"),
    )
)
FERNET_KEY = "2Rr1p3G7cLGbn2qUsf7hR7bx9k3bgkX2h5H6m3vJxVw="
OTHER_FERNET_KEY = "hJ0kq3xq3s1i6oXJcHk3GyqQ0cWm9m7n0tV1y2vUe4s="
PASSWORD = "hunter2-Pa55word"
PROGRAM = """
import django, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")
django.setup()
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in sys.argv[1:]}, default=str))
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A production environment: DEBUG off, secrets set, no .env, no URLs."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in SETTING_NAMES and name.removesuffix("_FILE") not in SETTING_NAMES
    }
    clean.update(
        DOTENV_PATH=os.devnull,
        DATA_DIR=str(tmp_path / "data"),
        SECRET_KEY="a-secret-key-for-settings-tests",
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
    )

    return clean


def _run(env: dict[str, str], *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *names],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _settings(env: dict[str, str], *names: str) -> dict[str, Any]:
    result = _run(env, *names)
    assert result.returncode == 0, result.stderr

    return dict(json.loads(result.stdout))


def _startup_error(env: dict[str, str]) -> str:
    """Return the last line that a refused start-up printed."""
    result = _run(env, "DEBUG")
    assert result.returncode != 0
    assert result.stdout == ""

    return result.stderr.strip().splitlines()[-1]


def _refused(message: str) -> str:
    return f"django.core.exceptions.ImproperlyConfigured: {message}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "DEBUG",
            "maybe",
            "DEBUG must be one of 1/0, true/false, yes/no, on/off; got 'maybe'.",
        ),
        (
            "WEBHOOK_MAX_BODY_BYTES",
            "abc",
            "WEBHOOK_MAX_BODY_BYTES must be an integer; got 'abc'.",
        ),
        (
            "WEBHOOK_MAX_BODY_BYTES",
            "-5",
            "WEBHOOK_MAX_BODY_BYTES must be at least 1024; got -5.",
        ),
        (
            "DATABASE_URL",
            "mysql://x",
            "DATABASE_URL must be a URL starting with postgres://, "
            "postgresql://, pgsql:// or sqlite://.",
        ),
        (
            "REDIS_URL",
            "notaurl",
            "REDIS_URL must be a URL starting with redis://, rediss:// or unix://.",
        ),
        (
            "TELEGRAM_API_URL",
            "ftp://x",
            "TELEGRAM_API_URL must be a URL starting with http:// or https://.",
        ),
        ("PUBLIC_BASE_URL", "https://:99999", "PUBLIC_BASE_URL must name a host."),
        (
            "PUBLIC_BASE_URL",
            "https://bots.example.com:99999",
            "PUBLIC_BASE_URL has a malformed port.",
        ),
        (
            "FIELD_ENCRYPTION_KEYS",
            "short",
            "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key "
            "(32 url-safe base64-encoded bytes).",
        ),
        (
            "FIELD_ENCRYPTION_KEYS",
            f"{FERNET_KEY},short",
            "FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key "
            "(32 url-safe base64-encoded bytes).",
        ),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of json, text; got 'xml'."),
    ],
)
def test_malformed_value_stops_startup_naming_the_variable(
    env: dict[str, str], name: str, value: str, message: str
) -> None:
    env[name] = value

    line = _startup_error(env)

    assert line == _refused(message)


@pytest.mark.parametrize("name", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
def test_missing_secret_with_debug_off_stops_startup(
    env: dict[str, str], name: str
) -> None:
    del env[name]

    line = _startup_error(env)

    assert line == _refused(f"{name} (or {name}_FILE) must be set.")


def test_missing_secrets_with_debug_on_use_development_values(
    env: dict[str, str],
) -> None:
    del env["SECRET_KEY"], env["FIELD_ENCRYPTION_KEYS"]
    env["DEBUG"] = "1"

    first = _settings(env, "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")
    second = _settings(env, "SECRET_KEY", "FIELD_ENCRYPTION_KEYS")

    assert first["SECRET_KEY"] == "insecure-development-key-only-used-with-debug-on"
    assert len(first["FIELD_ENCRYPTION_KEYS"]) == 1
    # Stable across restarts, so that stored secrets stay readable.
    assert second == first


def test_dotenv_fills_in_what_the_environment_leaves_unset(
    env: dict[str, str], tmp_path: Path
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SECRET_KEY=from-the-dotenv\nLOG_FORMAT=text\n", encoding="utf-8")
    del env["SECRET_KEY"]
    env["LOG_FORMAT"] = "json"
    env["DOTENV_PATH"] = str(dotenv)

    values = _settings(env, "SECRET_KEY", "LOG_FORMAT")

    assert values == {"SECRET_KEY": "from-the-dotenv", "LOG_FORMAT": "json"}


def test_dotenv_path_to_nothing_reads_no_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    del env["SECRET_KEY"]
    env["DOTENV_PATH"] = str(tmp_path / "absent.env")

    line = _startup_error(env)

    assert line == _refused("SECRET_KEY (or SECRET_KEY_FILE) must be set.")


def test_trailing_slash_is_stripped_from_urls(env: dict[str, str]) -> None:
    env["TELEGRAM_API_URL"] = "https://tg.example.com/api/"
    env["PUBLIC_BASE_URL"] = "https://bots.example.com/"

    values = _settings(env, "TELEGRAM_API_URL", "PUBLIC_BASE_URL")

    assert values == {
        "TELEGRAM_API_URL": "https://tg.example.com/api",
        "PUBLIC_BASE_URL": "https://bots.example.com",
    }


def test_unset_values_fall_back_to_the_embedded_default(
    env: dict[str, str], tmp_path: Path
) -> None:
    values = _settings(
        env,
        "DATABASES",
        "CACHES",
        "CELERY_TASK_ALWAYS_EAGER",
        "CELERY_BROKER_URL",
        "WEBHOOK_MAX_BODY_BYTES",
        "TELEGRAM_API_URL",
        "PUBLIC_BASE_URL",
        "LOG_FORMAT",
        "TIME_ZONE",
        "DEBUG",
    )

    database = values["DATABASES"]["default"]
    assert (database["ENGINE"], database["NAME"]) == (
        "django.db.backends.sqlite3",
        str(tmp_path / "data" / "botfactory.sqlite3"),
    )
    assert values["CACHES"]["default"]["BACKEND"] == (
        "django.core.cache.backends.locmem.LocMemCache"
    )
    assert {
        name: values[name] for name in values if name not in ("DATABASES", "CACHES")
    } == {
        "CELERY_TASK_ALWAYS_EAGER": True,
        "CELERY_BROKER_URL": "memory://localhost/",
        "WEBHOOK_MAX_BODY_BYTES": 262144,
        "TELEGRAM_API_URL": "https://api.telegram.org",
        "PUBLIC_BASE_URL": None,
        "LOG_FORMAT": "json",
        "TIME_ZONE": "UTC",
        "DEBUG": False,
    }


def test_logs_are_text_with_debug_on(env: dict[str, str]) -> None:
    env["DEBUG"] = "yes"

    values = _settings(env, "LOG_FORMAT", "DEBUG")

    assert values == {"LOG_FORMAT": "text", "DEBUG": True}


def test_urls_select_postgresql_and_redis(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = (
        f"postgres://bf:{PASSWORD}@db.internal:5433/bf?sslmode=require"
    )
    env["REDIS_URL"] = "redis://cache.internal:6379/1"

    values = _settings(env, "DATABASES", "CACHES", "CELERY_TASK_ALWAYS_EAGER")

    database = values["DATABASES"]["default"]
    assert {
        key: database[key] for key in ("ENGINE", "HOST", "PORT", "NAME", "PASSWORD")
    } == {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "db.internal",
        "PORT": 5433,
        "NAME": "bf",
        "PASSWORD": PASSWORD,
    }
    # An option given in the URL is kept beside the project's own.
    assert database["OPTIONS"]["sslmode"] == "require"
    assert database["OPTIONS"]["connect_timeout"] == 2
    assert values["CACHES"]["default"]["BACKEND"] == "django_redis.cache.RedisCache"
    assert values["CACHES"]["default"]["LOCATION"] == "redis://cache.internal:6379/1"
    assert values["CELERY_TASK_ALWAYS_EAGER"] is False


def test_secrets_are_read_from_their_files(env: dict[str, str], tmp_path: Path) -> None:
    files = {
        "SECRET_KEY": "secret-key-from-a-file",
        "FIELD_ENCRYPTION_KEYS": f"{OTHER_FERNET_KEY},{FERNET_KEY}",
        "DATABASE_URL": f"postgres://bf:{PASSWORD}@db.internal/bf",
    }
    for name, value in files.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n", encoding="utf-8")
        env.pop(name, None)
        env[f"{name}_FILE"] = str(path)

    values = _settings(env, "SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASES")

    assert values["SECRET_KEY"] == "secret-key-from-a-file"
    assert values["FIELD_ENCRYPTION_KEYS"] == [OTHER_FERNET_KEY, FERNET_KEY]
    assert values["DATABASES"]["default"]["PASSWORD"] == PASSWORD


@pytest.mark.parametrize("name", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS"])
def test_secret_and_its_file_both_set_stops_startup(
    env: dict[str, str], tmp_path: Path, name: str
) -> None:
    path = tmp_path / "secret"
    path.write_text(env[name], encoding="utf-8")
    env[f"{name}_FILE"] = str(path)

    line = _startup_error(env)

    assert line == _refused(f"Set either {name} or {name}_FILE, not both.")


def test_unreadable_secret_file_stops_startup(
    env: dict[str, str], tmp_path: Path
) -> None:
    del env["SECRET_KEY"]
    env["SECRET_KEY_FILE"] = str(tmp_path / "missing")

    line = _startup_error(env)

    assert line == _refused(
        "SECRET_KEY_FILE points to a file that cannot be read "
        "(No such file or directory)."
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "DATABASE_URL",
            f"postgres://bf:{PASSWORD}@db.internal:port/bf",
            "DATABASE_URL has a malformed port.",
        ),
        (
            "DATABASE_URL",
            f"mysql://bf:{PASSWORD}@db.internal/bf",
            "DATABASE_URL must be a URL starting with postgres://, "
            "postgresql://, pgsql:// or sqlite://.",
        ),
        (
            "DATABASE_URL",
            f"postgres://bf:{PASSWORD}@[db.internal/bf",
            "DATABASE_URL is not a valid URL.",
        ),
        (
            "REDIS_URL",
            f"redis://:{PASSWORD}@cache.internal:99999/0",
            "REDIS_URL has a malformed port.",
        ),
        (
            "FIELD_ENCRYPTION_KEYS",
            f"{PASSWORD}-not-a-key",
            "FIELD_ENCRYPTION_KEYS: key 1 is not a Fernet key "
            "(32 url-safe base64-encoded bytes).",
        ),
    ],
)
def test_malformed_secret_never_appears_in_the_error(
    env: dict[str, str], tmp_path: Path, name: str, value: str, message: str
) -> None:
    path = tmp_path / "secret"
    path.write_text(value, encoding="utf-8")
    env.pop(name, None)
    env[f"{name}_FILE"] = str(path)
    direct = dict(env)
    del direct[f"{name}_FILE"]
    direct[name] = value

    from_file = _run(env, "DEBUG")
    from_value = _run(direct, "DEBUG")

    for result in (from_file, from_value):
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[-1] == _refused(message)
        assert PASSWORD not in result.stderr + result.stdout
