import os
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from botfactory.context import context_get, context_pop, context_push, new_trace_id
from botfactory.multiproc import MULTIPROC_ENV, worker_metrics_dir_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")
# Before anything imports prometheus_client: nothing above does. None unless
# this process is a `celery worker` that exports its metrics.
_worker_metrics_dir = worker_metrics_dir_prepare(sys.argv)

app = Celery("botfactory")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Context tokens of running tasks by task id; a task run in-process (the
# embedded default) nests inside the request's context and restores it.
_task_tokens: dict[str, Any] = {}


@before_task_publish.connect
def _propagate_trace_id(headers: dict[str, Any] | None = None, **_: object) -> None:
    if headers is not None:
        headers.setdefault("trace_id", context_get().get("trace_id") or new_trace_id())


@task_prerun.connect
def _bind_task_context(
    task_id: str | None = None, task: object = None, **_: object
) -> None:
    request = getattr(task, "request", None)
    trace_id = (
        getattr(request, "trace_id", None)
        or context_get().get("trace_id")
        or new_trace_id()
    )
    token = context_push(trace_id=trace_id, task=getattr(task, "name", None))
    if task_id is not None:
        _task_tokens[task_id] = token


@task_postrun.connect
def _clear_task_context(task_id: str | None = None, **_: object) -> None:
    token = _task_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        context_pop(token)


@worker_init.connect
@worker_process_init.connect
def _install_database_pool(**_: object) -> None:
    """Bound every database wait of a worker, and check its pooled
    connections, as the web processes do.

    ``worker_init`` covers the solo and thread pools, ``worker_process_init``
    each child of the prefork pool.
    """
    from django.conf import settings

    from botfactory.database import database_pool_install

    database_pool_install(settings.DATABASE_COMMAND_TIMEOUT)


@worker_init.connect
@worker_process_init.connect
def _prepare_llm_provider(**_: object) -> None:
    """Build the LLM provider's client before the first task asks for it."""
    from llm.services import provider_prepare

    provider_prepare()


@worker_ready.connect
def _start_worker_metrics(sender: Any = None, **_: object) -> None:
    """Serve the worker's metrics and start its monitor, in the main process.

    Not in a worker run inside another program (the tests' in-thread one).
    """
    if _worker_metrics_dir is None:
        return

    from botfactory.worker_metrics import broker_queues_list, worker_metrics_start

    worker_metrics_start(
        hostname=getattr(sender, "hostname", None) or f"pid-{os.getpid()}",
        queues=broker_queues_list(app),
        transport_options=dict(app.conf.broker_transport_options or {}),
    )


@worker_shutdown.connect
def _stop_worker_metrics(**_: object) -> None:
    from botfactory.worker_metrics import worker_metrics_stop

    worker_metrics_stop()


@worker_process_shutdown.connect
def _forget_worker_child(pid: int | None = None, **_: object) -> None:
    """Drop the live gauges of a prefork child as it exits."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid or os.getpid(), path=path)


@task_failure.connect
@task_retry.connect
def _count_database_unavailable(
    exception: BaseException | None = None,
    reason: BaseException | None = None,
    **_: object,
) -> None:
    """Count a task that failed or will retry because the database is down."""
    from botfactory.errors import is_database_unavailable
    from botfactory.metrics import DB_UNAVAILABLE

    error = exception if exception is not None else reason
    if error is not None and is_database_unavailable(error):
        DB_UNAVAILABLE.inc()
