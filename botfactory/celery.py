import os
from typing import Any

from celery import Celery
from celery.signals import (
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)

from botfactory.context import context_get, context_pop, context_push, new_trace_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")

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
def _install_database_deadline(**_: object) -> None:
    """Bound every database wait of a worker as the web processes do.

    ``worker_init`` covers the solo and thread pools, ``worker_process_init``
    each child of the prefork pool.
    """
    from django.conf import settings

    from botfactory.database import database_deadline_install

    database_deadline_install(settings.DATABASE_COMMAND_TIMEOUT)
