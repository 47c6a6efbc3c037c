from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from botfactory import health
from bots import webhook

urlpatterns = [
    path("health", health.health, name="health"),
    path("telegram/<int:bot_id>/webhook", webhook.telegram_webhook, name="webhook"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
