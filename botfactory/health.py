from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Answer that the process is alive, touching neither database nor Redis."""
    return JsonResponse({"status": "ok"})
