"""The answer to a login that django-axes refuses after too many failures."""

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def login_locked_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """Render the lockout page (django-axes' AXES_LOCKOUT_CALLABLE)."""
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    context = {
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": minutes,
    }

    return render(
        request,
        "admin/login_locked.html",
        context,
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )
