from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from botfactory import health
from bots import webhook

urlpatterns = [
    path("health", health.health, name="health"),
    path("health/db", health.health_db, name="health-db"),
    path("telegram/<int:bot_id>/webhook", webhook.telegram_webhook, name="webhook"),
    path("admin/", admin.site.urls),
    path("", include("botfactory.api_urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
