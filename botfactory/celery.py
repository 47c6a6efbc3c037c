import os

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

from botfactory.context import context_bind, context_clear, context_get, new_trace_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")

app = Celery("botfactory")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@before_task_publish.connect
def _propagate_trace_id(headers: dict | None = None, **_: object) -> None:
    if headers is not None:
        headers.setdefault("trace_id", context_get().get("trace_id") or new_trace_id())


@task_prerun.connect
def _bind_task_context(task: object = None, **_: object) -> None:
    request = getattr(task, "request", None)
    trace_id = getattr(request, "trace_id", None) or new_trace_id()
    context_bind(trace_id=trace_id, task=getattr(task, "name", None))


@task_postrun.connect
def _clear_task_context(**_: object) -> None:
    context_clear()
