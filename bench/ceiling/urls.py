import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def webhook(request: HttpRequest, bot_id: int) -> JsonResponse:
    """Parse the update as the product's webhook does; answer 200."""
    try:
        update = json.loads(request.body)
    except ValueError:
        return JsonResponse({"code": "invalid_json"}, status=400)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return JsonResponse({"code": "invalid_update"}, status=400)

    return JsonResponse({"ok": True})


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("telegram/<int:bot_id>/webhook", webhook),
    path("health", health),
]
