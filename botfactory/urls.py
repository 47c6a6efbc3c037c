from django.contrib import admin
from django.urls import path

from botfactory import health
from bots import webhook

urlpatterns = [
    path("health", health.health, name="health"),
    path("telegram/<int:bot_id>/webhook", webhook.telegram_webhook, name="webhook"),
    path("admin/", admin.site.urls),
]
