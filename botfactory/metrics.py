"""The application's Prometheus metrics, all named ``botfactory_*``.

Every process defines the same metrics here and only here. Under several
gunicorn or Celery processes ``PROMETHEUS_MULTIPROC_DIR`` must be in the
environment before ``prometheus_client`` is first imported; each gauge says
how the values of several processes are combined.
"""

from prometheus_client import Counter, Gauge, Histogram

# Webhook answers are expected well under 100 ms; 0.2 s is the alert line.
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)
# Executor steps are pure Python, except SQL nodes.
STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# LLM answers: 1.5 s is the alert line for p95.
LLM_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

# --- webhook and updates ------------------------------------------------------

UPDATES_RECEIVED = Counter(
    "botfactory_updates_received",
    "Webhook and polling updates that passed the envelope checks.",
    ["bot_id", "update_type", "outcome"],
)
WEBHOOK_REJECTED = Counter(
    "botfactory_webhook_rejected",
    "Webhook calls refused before processing, by reason.",
    ["reason"],
)
WEBHOOK_DURATION = Histogram(
    "botfactory_webhook_duration_seconds",
    "Time from a webhook call's arrival to its answer.",
    buckets=WEBHOOK_BUCKETS,
)
DUPLICATE_UPDATES = Counter(
    "botfactory_duplicate_updates",
    "Updates delivered again after they had been processed.",
    ["bot_id"],
)
EXECUTOR_STEP_DURATION = Histogram(
    "botfactory_executor_step_duration_seconds",
    "Time the executor spends in one node, by component type.",
    ["component"],
    buckets=STEP_BUCKETS,
)
DB_UNAVAILABLE = Counter(
    "botfactory_db_unavailable",
    "Requests and tasks that found PostgreSQL unavailable.",
)
CACHE_REQUESTS = Counter(
    "botfactory_cache_requests",
    "Cache look-ups by cache and result (hit or miss).",
    ["cache", "result"],
)
SPEC_RELOADS = Counter(
    "botfactory_spec_reloads",
    "Spec and translation cache invalidations (publish or reload).",
)

# --- outbox and Telegram --------------------------------------------------------

TELEGRAM_SENDS = Counter(
    "botfactory_telegram_sends",
    "Bot API calls made for the outbox, by method, result and error code.",
    ["method", "result", "error_code"],
)
OUTBOX_BACKLOG = Gauge(
    "botfactory_outbox_backlog",
    "Outbound messages not yet sent (pending or in flight).",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "botfactory_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbound message not yet sent.",
    multiprocess_mode="mostrecent",
)

# --- Celery -----------------------------------------------------------------------

CELERY_QUEUE_LENGTH = Gauge(
    "botfactory_celery_queue_length",
    "Tasks waiting in a broker queue.",
    ["queue"],
    multiprocess_mode="mostrecent",
)
CELERY_WORKERS_ALIVE = Gauge(
    "botfactory_celery_workers_alive",
    "Celery workers whose heartbeat is fresh.",
    multiprocess_mode="mostrecent",
)
DEPENDENCY_UP = Gauge(
    "botfactory_dependency_up",
    "Whether a dependency answered its last check (1) or not (0).",
    ["dependency"],
    multiprocess_mode="mostrecent",
)

# --- LLM --------------------------------------------------------------------------

LLM_REQUESTS = Counter(
    "botfactory_llm_requests",
    "LLM completions by provider, model and outcome.",
    ["provider", "model", "outcome"],
)
LLM_DURATION = Histogram(
    "botfactory_llm_request_duration_seconds",
    "Time to a completion, retries included, by provider.",
    ["provider"],
    buckets=LLM_BUCKETS,
)
LLM_TOKENS = Counter(
    "botfactory_llm_tokens",
    "Tokens spent, by bot and kind (prompt or completion).",
    ["bot_id", "kind"],
)
CIRCUIT_BREAKER_OPEN = Gauge(
    "botfactory_circuit_breaker_open",
    "1 while a provider's circuit breaker is open or half-open, else 0.",
    ["provider"],
    multiprocess_mode="mostrecent",
)
CIRCUIT_BREAKER_TRANSITIONS = Counter(
    "botfactory_circuit_breaker_transitions",
    "Circuit breaker state changes, by provider and new state.",
    ["provider", "state"],
)

# --- label values known in advance ---------------------------------------------

WEBHOOK_REJECT_REASONS = (
    "unknown_bot",
    "forbidden",
    "unsupported_media_type",
    "too_large",
    "malformed",
    "db_unavailable",
)
UPDATE_OUTCOMES = ("processed", "duplicate", "ignored", "inactive")
CACHE_RESULTS = ("hit", "miss")


def web_metrics_initialise() -> None:
    """Create, at zero, the series a web process reports whatever happens.

    A series that does not exist yet breaks ``rate()`` and ``absent()`` in
    alert rules, and in multiprocess mode a labelled metric that was never
    touched is not exported at all.
    """
    for reason in WEBHOOK_REJECT_REASONS:
        WEBHOOK_REJECTED.labels(reason=reason)
    for cache in ("spec", "translations"):
        for result in CACHE_RESULTS:
            CACHE_REQUESTS.labels(cache=cache, result=result)
