"""The spec's JSON Schema, for editors outside the admin.

Public, unlike the rest of the API: it describes the spec language and holds
nothing of any bot, like the OpenAPI schema served beside it.
"""

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from bots.services.spec_editing import spec_schema_text


class SpecSchemaApi(APIView):
    """Return the JSON Schema of a bot spec."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="spec_schema",
        description=(
            "The JSON Schema (draft 2020-12) of a bot spec, as validation "
            "applies it: node types, their fields and limits. No token needed. "
            "Checks the schema cannot express (a goto to a missing node, "
            "missing translations) are made on publishing."
        ),
        tags=["specs"],
        auth=[],
        responses={
            200: OpenApiResponse(
                response={"type": "object", "additionalProperties": True},
                description="The JSON Schema, keys sorted.",
            )
        },
    )
    def get(self, request: Request) -> HttpResponse:
        # The same text as `manage.py spec_schema` writes, byte for byte.
        return HttpResponse(spec_schema_text(), content_type="application/json")
