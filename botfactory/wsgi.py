import importlib
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botfactory.settings")

application = get_wsgi_application()


def _warm_up() -> None:
    """Import now what the first requests would otherwise import.

    The URL configuration, the task modules (and with them Celery, kombu and
    the openai SDK) and the broker's transport are loaded lazily; doing it
    before the worker accepts connections keeps seconds of imports off the
    first updates each worker serves.
    """
    get_resolver().url_patterns  # noqa: B018
    for module in ("bots.tasks", "bots.services.llm"):
        importlib.import_module(module)
    celery_app = importlib.import_module("botfactory.celery").app
    celery_app.finalize()
    with celery_app.connection_for_write() as connection:
        connection.transport  # noqa: B018


_warm_up()
