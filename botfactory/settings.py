"""BotFactory settings, read from the environment.

With nothing set it runs on the embedded default: SQLite, a local-memory
cache and Celery tasks executed in-process.
"""

import base64
import binascii
import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from botfactory.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_secret,
    env_secret_list,
    env_str,
    env_url,
)
from botfactory.sentry import sentry_init, sentry_logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

# The git-ignored .env that `make run` writes; the environment always wins.
# DOTENV_PATH names another file, or /dev/null to read none (tests do, so
# that a developer's .env cannot change what they see).
load_dotenv(env_str("DOTENV_PATH", str(BASE_DIR / ".env")), override=False)

# --- core -------------------------------------------------------------------

DEBUG = env_bool("DEBUG", default=False)

SECRET_KEY = env_secret("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set.")
    SECRET_KEY = "insecure-development-key-only-used-with-debug-on"

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    "botfactory",
    "bots",
    "i18n",
]

MIDDLEWARE = [
    # First and last, so that django_http_* metrics cover the whole chain.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "botfactory.middleware.RequestContextMiddleware",
    # Answers /health, /health/db and /metrics before CommonMiddleware
    # validates the host, so that a probe by IP address works whatever
    # ALLOWED_HOSTS says.
    "botfactory.middleware.HealthCheckMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After authentication: turns a login that django-axes refused into the
    # lockout page.
    "axes.middleware.AxesMiddleware",
    "botfactory.middleware.DatabaseUnavailableMiddleware",
    "botfactory.metrics_views.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "botfactory.urls"
WSGI_APPLICATION = "botfactory.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` fills it (the Docker image does at build time);
# whitenoise serves it, so the admin is styled without DEBUG and without a
# web server in front that knows about static files.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")) or "")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: that one needs collectstatic before any page
    # renders, which tests and `make run` never do.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- HTTPS --------------------------------------------------------------------

# TLS ends at the proxy in front, which must set X-Forwarded-Proto (and strip
# one sent by a client).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Telegram does not follow redirects (it retries the update for a day) and
# probes and scrapers call these by plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [
    r"^telegram/\d+/webhook$",
    r"^health$",
    r"^health/db$",
    r"^metrics$",
]
# Sent on HTTPS answers only; includeSubDomains and preload are what the
# preload list asks for, and cost nothing until the domain is submitted.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True
)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# Where the embedded default keeps its SQLite files and bots' own SQLite data.
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "data")) or "")

# --- secrets at rest ----------------------------------------------------------


def _fernet_keys(raw: list[str]) -> list[str]:
    for position, key in enumerate(raw, start=1):
        try:
            decoded = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            decoded = b""
        if len(decoded) != 32:
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)."
            )

    return raw


FIELD_ENCRYPTION_KEYS = _fernet_keys(env_secret_list("FIELD_ENCRYPTION_KEYS"))
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KEYS_FILE) must be set."
        )
    # Stable across restarts as long as the development SECRET_KEY is.
    _derived = hashlib.sha256(b"field-encryption:" + SECRET_KEY.encode()).digest()
    FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(_derived).decode("ascii")]

# --- database -----------------------------------------------------------------

DATABASE_URL = env_url(
    "DATABASE_URL", schemes=("postgres", "postgresql", "pgsql", "sqlite")
)
DATABASE_CONNECT_TIMEOUT = env_int("DATABASE_CONNECT_TIMEOUT", 2, minimum=1)
DATABASE_STATEMENT_TIMEOUT_MS = env_int(
    "DATABASE_STATEMENT_TIMEOUT_MS", 5000, minimum=100
)
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 8, minimum=1)
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", default=True)
# How long a request waits for a pooled connection before answering 503;
# kept under two seconds so an outage is reported within that bound.
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 1.5, minimum=0.1)
# How long a web process waits for the server to answer one command (query,
# commit, the pool's check) before it closes the connection and answers 503.
# A frozen server still acknowledges TCP, so neither keepalives nor
# tcp_user_timeout end such a wait. One second over the statement timeout, so
# that the server cancels a slow statement before the client gives up on it.
DATABASE_COMMAND_TIMEOUT = env_float(
    "DATABASE_COMMAND_TIMEOUT",
    DATABASE_STATEMENT_TIMEOUT_MS / 1000 + 1.0,
    minimum=0.5,
)


def _database(url: str | None) -> dict[str, Any]:
    if url is None:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{DATA_DIR / 'botfactory.sqlite3'}"
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is malformed: {exc}") from None
    # Options given in the URL (sslmode=require, ...) win over the defaults.
    given = config.get("OPTIONS", {})

    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {
            # IMMEDIATE takes the write lock up front, so two writers never
            # deadlock while upgrading a read lock.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            **given,
        }
        return config

    config["CONN_MAX_AGE"] = 0
    # The pool checks a connection before handing it out, so connections a
    # restarted server has dropped are replaced, not failed on. Web and worker
    # processes swap the check (an empty query) for pooled_connection_check,
    # which spares most checkouts the round trip.
    config["CONN_HEALTH_CHECKS"] = True
    config["OPTIONS"] = {
        "connect_timeout": DATABASE_CONNECT_TIMEOUT,
        "options": f"-c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}",
        # Parameters bound by the server, and a statement prepared on its
        # connection from its sixth run: the hot path's few statements are
        # then neither parsed nor planned again. Off behind a pooler that hands a
        # session's statements to other connections (PgBouncer's
        # transaction mode).
        "server_side_binding": DATABASE_PREPARED_STATEMENTS,
        "prepare_threshold": 5 if DATABASE_PREPARED_STATEMENTS else None,
        "pool": {
            "min_size": 1,
            "max_size": DATABASE_POOL_MAX_SIZE,
            # The default is 30 s; a request should fail fast with a 503.
            "timeout": DATABASE_POOL_TIMEOUT,
            # The default retries a failed connection for five minutes with
            # exponential backoff, so after an outage a process could wait a
            # minute for its next attempt. Giving up at once leaves the next
            # request to open a connection, the moment the server is back.
            "reconnect_timeout": 0.5,
            "max_lifetime": 600.0,
        },
        **given,
    }
    return config


DATABASES = {"default": _database(DATABASE_URL)}
IS_POSTGRESQL = DATABASES["default"]["ENGINE"].endswith("postgresql")

# --- cache --------------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "bf") or "bf"

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
                # Redis holds only caches: a Redis outage must not fail a request.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "botfactory",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

# --- Celery -------------------------------------------------------------------

# The in-memory transport ignores the host; naming one keeps kombu from
# warning on every task the embedded default runs in-process.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
# kombu's Redis transport, fixed so that a worker survives losing Redis while
# tasks run (see botfactory/broker.py).
# TODO: a rediss:// broker keeps kombu's own transport, which sets up TLS by
# that scheme; its workers still exit when Redis is lost mid-task.
CELERY_BROKER_TRANSPORT = (
    "botfactory.broker:Transport" if (REDIS_URL or "").startswith("redis://") else None
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60, minimum=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Keeps the broker's keys apart when several deployments share a Redis.
    "global_keyprefix": f"{CACHE_KEY_PREFIX}:celery:",
    "visibility_timeout": 3600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task is published after its rows commit, and the sweeps publish it again
# if that fails: one quick retry covers a connection dropped by a Redis
# restart, and a Redis that is down costs a webhook milliseconds, not the
# second or more of Celery's default retries (which held every web worker).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Keep the project's handlers (context and redaction) in worker processes.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
OUTBOX_SWEEP_INTERVAL_SECONDS = env_float(
    "OUTBOX_SWEEP_INTERVAL_SECONDS", 30.0, minimum=1.0
)

# --- Telegram -----------------------------------------------------------------

TELEGRAM_API_URL = env_url(
    "TELEGRAM_API_URL", "https://api.telegram.org", schemes=("http", "https")
)
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", schemes=("http", "https"))
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 262144, minimum=1024)
TELEGRAM_TIMEOUT_SECONDS = env_float("TELEGRAM_TIMEOUT_SECONDS", 10.0, minimum=0.1)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8, minimum=1)
# Sender tasks that may drain the ready chats at once (with Redis): at
# least the send threads of all outbox workers together, or some sit idle.
OUTBOX_SENDERS = env_int("OUTBOX_SENDERS", 8, minimum=1)
# How long a send may stay in flight before another worker may retry it.
OUTBOX_LEASE_SECONDS = env_float("OUTBOX_LEASE_SECONDS", 60.0, minimum=1.0)
# Distinct parsed specs each process keeps (about 25 KB each for a spec of
# the demo's size); bots whose specs are identical share one. Set it above
# the number of distinct live specs, or busy bots re-parse theirs.
SPEC_CACHE_SIZE = env_int("SPEC_CACHE_SIZE", 1024, minimum=1)
# Telegram's sending limits per bot token (bots/services/send_limits.py): a
# bucket of 3 messages per chat refilling at 1 a second, 20 in any minute
# per group, 30 in any second per bot.
OUTBOX_CHAT_BURST = env_int("OUTBOX_CHAT_BURST", 3, minimum=1)
OUTBOX_CHAT_PER_SECOND = env_float("OUTBOX_CHAT_PER_SECOND", 1.0, minimum=0.01)
OUTBOX_GROUP_LIMIT = env_int("OUTBOX_GROUP_LIMIT", 20, minimum=1)
OUTBOX_GROUP_WINDOW_SECONDS = env_float(
    "OUTBOX_GROUP_WINDOW_SECONDS", 60.0, minimum=0.1
)
OUTBOX_BOT_PER_SECOND = env_int("OUTBOX_BOT_PER_SECOND", 30, minimum=1)

# --- LLM ----------------------------------------------------------------------

# Any OpenAI-compatible server (vLLM, Ollama, llama.cpp) works; with no key
# set, a built-in echo provider answers so the embedded default runs offline.
_OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
OPENAI_BASE_URL = (
    env_url("OPENAI_BASE_URL", _OPENAI_DEFAULT_URL, schemes=("http", "https"))
    or _OPENAI_DEFAULT_URL
)
OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
LLM_MODEL = env_str("LLM_MODEL", "gpt-4o-mini") or "gpt-4o-mini"
# The provider's label in metrics and the circuit breaker's key.
_LLM_DEFAULT_PROVIDER = "openai" if OPENAI_API_KEY else "echo"
LLM_PROVIDER_NAME = (
    env_str("LLM_PROVIDER_NAME", _LLM_DEFAULT_PROVIDER) or _LLM_DEFAULT_PROVIDER
)
LLM_BREAKER_FAILURE_THRESHOLD = env_int("LLM_BREAKER_FAILURE_THRESHOLD", 5, minimum=1)
LLM_BREAKER_COOLDOWN_SECONDS = env_float(
    "LLM_BREAKER_COOLDOWN_SECONDS", 30.0, minimum=0.1
)
# How long a half-open probe holds its lease; a prober that dies frees it
# after this long. Longer than one attempt's timeout.
LLM_BREAKER_PROBE_TTL_SECONDS = env_float(
    "LLM_BREAKER_PROBE_TTL_SECONDS", 30.0, minimum=0.1
)
# Per attempt; an attempt also never outlives the caller's deadline.
LLM_TIMEOUT_SECONDS = env_float("LLM_TIMEOUT_SECONDS", 10.0, minimum=0.1)
LLM_MAX_ATTEMPTS = env_int("LLM_MAX_ATTEMPTS", 4, minimum=1)
LLM_BACKOFF_INITIAL_SECONDS = env_float("LLM_BACKOFF_INITIAL_SECONDS", 0.5, minimum=0.0)
LLM_BACKOFF_MAX_SECONDS = env_float("LLM_BACKOFF_MAX_SECONDS", 8.0, minimum=0.0)
# How long an identical request waits for the one in flight before it calls
# the provider itself.
LLM_CACHE_WAIT_SECONDS = env_float("LLM_CACHE_WAIT_SECONDS", 15.0, minimum=0.0)

# --- LLM node -----------------------------------------------------------------

# LLM answers wait on the network: their own queue, for a worker with a
# thread pool (`celery -A botfactory worker -Q llm -P threads -c 32`).
CELERY_TASK_ROUTES = {"bots.llm_answer": {"queue": "llm"}}
# A run killed mid-call is redelivered; past this many redeliveries the user
# gets the fallback instead of another attempt.
LLM_TASK_MAX_REDELIVERIES = env_int("LLM_TASK_MAX_REDELIVERIES", 3, minimum=0)
# A run holds its request for the node's budget plus this long (over one
# Bot API call's bound, which an answer may wait for the "thinking…" message
# to take); after that the sweep hands it to another worker. Far under the
# broker's visibility timeout (3600 s), so a lost worker is noticed by the
# lease first.
LLM_TASK_LEASE_GRACE_SECONDS = env_float(
    "LLM_TASK_LEASE_GRACE_SECONDS", 30.0, minimum=1.0
)
# The sweep re-enqueues a pending request this long after it was enqueued.
LLM_SWEEP_AFTER_SECONDS = env_float("LLM_SWEEP_AFTER_SECONDS", 10.0, minimum=1.0)
# A prefork worker would stop an answer at the general limits (60 / 90 s)
# before a node's longest budget (120 s) ran out; thread pools have none.
CELERY_TASK_ANNOTATIONS = {
    "bots.llm_answer": {"soft_time_limit": 180, "time_limit": 210},
}

# --- bots' own SQL ------------------------------------------------------------

SQL_ROW_CAP = env_int("SQL_ROW_CAP", 1000, minimum=1)

# --- data lifecycle -----------------------------------------------------------

# Telegram re-delivers an unacknowledged update for up to 24 hours; a dedup
# record pruned sooner would let a late copy run twice.
PROCESSED_UPDATE_RETENTION_HOURS = env_int(
    "PROCESSED_UPDATE_RETENTION_HOURS", 48, minimum=25
)
OUTBOX_SENT_RETENTION_DAYS = env_int("OUTBOX_SENT_RETENTION_DAYS", 7, minimum=1)
# Failed sends are what an operator investigates: kept at least as long.
OUTBOX_FAILED_RETENTION_DAYS = env_int("OUTBOX_FAILED_RETENTION_DAYS", 30, minimum=1)
if OUTBOX_FAILED_RETENTION_DAYS < OUTBOX_SENT_RETENTION_DAYS:
    raise ImproperlyConfigured(
        "OUTBOX_FAILED_RETENTION_DAYS must be at least OUTBOX_SENT_RETENTION_DAYS."
    )
# Finished (done or failed) LLM requests; two days outlive the dedup records.
LLM_REQUEST_RETENTION_DAYS = env_int("LLM_REQUEST_RETENTION_DAYS", 7, minimum=2)
# Rows per DELETE, so that a large backlog never holds a lock for long.
PRUNE_BATCH_SIZE = env_int("PRUNE_BATCH_SIZE", 1000, minimum=1)
PRUNE_INTERVAL_SECONDS = env_float("PRUNE_INTERVAL_SECONDS", 3600.0, minimum=60.0)
# A conversation without an update for this long starts over at the start
# node on its next update (0: never). A spec's idle_expiry_seconds wins.
CONVERSATION_IDLE_EXPIRY_SECONDS = env_int(
    "CONVERSATION_IDLE_EXPIRY_SECONDS", 86400, minimum=0
)
if 0 < CONVERSATION_IDLE_EXPIRY_SECONDS < 60:
    raise ImproperlyConfigured(
        "CONVERSATION_IDLE_EXPIRY_SECONDS must be 0 (never) or at least 60."
    )

# --- logging ------------------------------------------------------------------

LOG_FORMAT = env_choice("LOG_FORMAT", ("json", "text"), "text" if DEBUG else "json")
LOG_LEVEL = env_choice(
    "LOG_LEVEL", ("debug", "info", "warning", "error"), "info"
).upper()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "botfactory.logging.ContextFilter"},
        "redact": {"()": "botfactory.logging.RedactingFilter"},
    },
    "formatters": {
        "json": {
            "()": "botfactory.logging.JsonFormatter",
        },
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(trace_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # These log request URLs (which carry the bot token) and message texts.
        "telegram": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
        # A line for every task received and succeeded drowns the worker's
        # own lines (and the terminal chat); failures still log as errors.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
    },
}

# --- metrics ------------------------------------------------------------------

# GET /metrics is open unless one of these is set; with both, a scraper needs
# an allowed address and the credentials.
METRICS_BASIC_AUTH = env_secret("METRICS_BASIC_AUTH")
if METRICS_BASIC_AUTH is not None and ":" not in METRICS_BASIC_AUTH:
    raise ImproperlyConfigured("METRICS_BASIC_AUTH must be user:password.")
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS")
# A Celery worker serves its own processes' metrics on this port (0: none).
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 9808, minimum=0)
WORKER_METRICS_ADDRESS = env_str("WORKER_METRICS_ADDRESS", "0.0.0.0") or "0.0.0.0"
# How often a worker samples the outbox, the broker queues and its peers.
METRICS_MONITOR_INTERVAL_SECONDS = env_float(
    "METRICS_MONITOR_INTERVAL_SECONDS", 15.0, minimum=0.1
)

# --- error reporting ----------------------------------------------------------

# Off unless a DSN is given; events are redacted as the logs are.
SENTRY_DSN = env_secret("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "production") or "production"
if SENTRY_DSN:
    sentry_init(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT)
    LOGGING = sentry_logging_config(LOGGING)

# --- login limits -------------------------------------------------------------

# django-axes refuses logins for a username from an address after this many
# failures in a row, for the cool-off; a success starts the count again. The
# address is the connecting peer (REMOTE_ADDR), as for the metrics allow list.
AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out login is refused before a password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "botfactory.auth.login_locked_response"
AXES_HTTP_RESPONSE_CODE = 429
# Its log lines name the lockout parameters masked, and no start-up banner.
AXES_VERBOSE = False

# --- REST API -----------------------------------------------------------------

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "botfactory.errors.api_exception_handler",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Tokens only, sent as "Authorization: Token <key>": the first class's
    # header makes an unauthenticated request a 401 rather than a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": ["knox.auth.TokenAuthentication"],
    "DEFAULT_PARSER_CLASSES": ["botfactory.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

API_TOKEN_TTL_DAYS = env_int("API_TOKEN_TTL_DAYS", 90, minimum=1)
REST_KNOX = {
    # Stored as SHA-512 digests (knox's default); the key is shown only once.
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS),
    "AUTH_HEADER_PREFIX": "Token",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "BotFactory API",
    "DESCRIPTION": (
        "Publish and reload bots' specs and edit their translations. Staff "
        "only: send `Authorization: Token <key>` (`manage.py create_api_token`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are public; the endpoints are not.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # The docs page's Swagger UI comes from a pinned package and is served as
    # this project's static files: it works offline and loads nothing from a
    # CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CELERY_BEAT_SCHEDULE = {
    "outbox-sweep": {
        "task": "bots.outbox_sweep",
        "schedule": OUTBOX_SWEEP_INTERVAL_SECONDS,
    },
    "llm-sweep": {
        "task": "bots.llm_sweep",
        "schedule": OUTBOX_SWEEP_INTERVAL_SECONDS,
    },
    "data-prune": {
        "task": "bots.data_prune",
        "schedule": PRUNE_INTERVAL_SECONDS,
    },
}
