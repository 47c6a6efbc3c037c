from django.apps import AppConfig


class BotfactoryConfig(AppConfig):
    name = "botfactory"
    verbose_name = "BotFactory"

    def ready(self) -> None:
        from botfactory.metrics import web_metrics_initialise

        # Once per process, after gunicorn's fork (the app is never preloaded).
        web_metrics_initialise()
