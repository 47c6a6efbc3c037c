"""The REST API of a bot: its spec, its translations, its users' data.

Staff only, with tokens (see ``create_api_token``); errors are rendered by
``botfactory.errors.api_exception_handler``. A token acts as its user, with
that user's access to each bot (``bots.services.access``): a bot they may not
see is a 404; reading translations needs VIEW; reload, translation edits
and exporting a user's data need EDIT; publishing and deleting a user's
data need PUBLISH (403 ``permission_denied`` otherwise).
"""

from typing import Any

from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bots.models import Bot
from bots.selectors import bot_get
from bots.services.access import Level, bot_access_level
from bots.services.privacy import (
    telegram_user_id_parse,
    user_data_delete,
    user_data_export,
)
from bots.services.specs import bot_reload, spec_publish
from bots.services.translations import (
    bot_translation_coverage_get,
    bot_translation_set,
)
from i18n.apis import FORMS_SCHEMA, FormsField, LocaleField
from i18n.selectors import translation_table_get


class _ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()

    class Meta:
        ref_name = "Error"


class _FieldErrorSerializer(_ErrorSerializer):
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Messages by JSON path of what was refused.",
    )

    class Meta:
        ref_name = "FieldError"


def _error(description: str, serializer: type = _ErrorSerializer) -> OpenApiResponse:
    return OpenApiResponse(response=serializer, description=description)


_BOT_ID = OpenApiParameter(
    "id", int, OpenApiParameter.PATH, description="The bot's id."
)

# Every endpoint is a bot's and staff only.
_COMMON_ERRORS = {
    401: _error("No valid token (code not_authenticated)."),
    403: _error(
        "The token's user is not staff, or their access to the bot is too low."
    ),
    404: _error("There is no such bot (code not_found)."),
}
_TOO_LARGE = {413: _error("The body is too large (code payload_too_large).")}


def _bot_get_or_404(bot_id: int, *, user: Any, level: int) -> Bot:
    # A bot the token's user may not see is "no such bot", so ids leak nothing.
    bot = bot_get(bot_ref=bot_id)
    held = bot_access_level(user=user, bot=bot) if bot is not None else 0
    if bot is None or held < Level.VIEW:
        raise NotFound("There is no such bot.")
    if held < level:
        raise PermissionDenied("Your access to this bot does not allow this.")

    return bot


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "The spec: start node, locales, commands and nodes.",
    }
)
class _SpecField(serializers.JSONField):
    pass


class BotReloadApi(APIView):
    """Make every process drop the bot's cached spec and translations."""

    class OutputSerializer(serializers.Serializer):
        bot_id = serializers.IntegerField()
        spec_version = serializers.IntegerField(
            help_text="The number of the live spec version."
        )
        cache_invalidated = serializers.BooleanField()

        class Meta:
            ref_name = "BotReload"

    @extend_schema(
        operation_id="bot_reload",
        parameters=[_BOT_ID],
        tags=["bots"],
        request=None,
        responses={
            200: OutputSerializer,
            **_COMMON_ERRORS,
            409: _error("Nothing is published yet (code no_live_version)."),
        },
    )
    def post(self, request: Request, id: int) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.EDIT)

        version = bot_reload(bot=bot)

        data = self.OutputSerializer(
            {
                "bot_id": bot.pk,
                "spec_version": version.number,
                "cache_invalidated": True,
            }
        ).data

        return Response(data)


class SpecPublishApi(APIView):
    """Validate, lint and publish a spec as the bot's next live version."""

    class InputSerializer(serializers.Serializer):
        spec = _SpecField()
        message = serializers.CharField(
            required=False, allow_blank=True, max_length=500, default=""
        )

        class Meta:
            ref_name = "SpecPublishInput"

    class OutputSerializer(serializers.Serializer):
        class WarningSerializer(serializers.Serializer):
            path = serializers.CharField()
            message = serializers.CharField()
            code = serializers.CharField()

            class Meta:
                ref_name = "LintWarning"

        bot_id = serializers.IntegerField()
        spec_version = serializers.IntegerField(
            help_text="The number of the new live spec version."
        )
        warnings = WarningSerializer(many=True)

        class Meta:
            ref_name = "SpecPublish"

    @extend_schema(
        operation_id="spec_publish",
        parameters=[_BOT_ID],
        tags=["bots"],
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: _error(
                "Malformed JSON (parse_error), a missing spec (invalid) or a "
                "spec with errors (spec_invalid, fields by path in the spec).",
                _FieldErrorSerializer,
            ),
            **_COMMON_ERRORS,
            **_TOO_LARGE,
        },
    )
    def post(self, request: Request, id: int) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.PUBLISH)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        version, warnings = spec_publish(
            bot=bot,
            source=serializer.validated_data["spec"],
            author=request.user,
            message=serializer.validated_data["message"],
        )

        data = self.OutputSerializer(
            {"bot_id": bot.pk, "spec_version": version.number, "warnings": warnings}
        ).data

        return Response(data, status=201)


class TranslationListApi(APIView):
    """Return the bot's own translations in one locale (no fallback)."""

    class InputSerializer(serializers.Serializer):
        locale = LocaleField()

    class OutputSerializer(serializers.Serializer):
        locale = serializers.CharField()
        translations = serializers.DictField(child=FormsField())

        class Meta:
            ref_name = "TranslationList"

    @extend_schema(
        operation_id="translation_list",
        tags=["i18n"],
        parameters=[_BOT_ID, InputSerializer],
        responses={
            200: OutputSerializer,
            400: _error("A missing or malformed locale.", _FieldErrorSerializer),
            **_COMMON_ERRORS,
        },
    )
    def get(self, request: Request, id: int) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.VIEW)
        serializer = self.InputSerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        locale = serializer.validated_data["locale"]

        table = translation_table_get(bot_id=bot.pk).get(locale, {})

        translations = dict(sorted(table.items()))
        data = self.OutputSerializer(
            {"locale": locale, "translations": translations}
        ).data

        return Response(data)


class TranslationSetApi(APIView):
    """Create or replace one key's texts in one locale; live at once."""

    class OutputSerializer(serializers.Serializer):
        locale = serializers.CharField()
        key = serializers.CharField()
        forms = FormsField()

        class Meta:
            ref_name = "Translation"

    @extend_schema(
        operation_id="translation_set",
        parameters=[
            _BOT_ID,
            OpenApiParameter(
                "locale",
                str,
                OpenApiParameter.PATH,
                description="A BCP 47 locale tag, stored in lowercase (pt-br).",
            ),
            OpenApiParameter(
                "key",
                str,
                OpenApiParameter.PATH,
                description="A dotted key such as menu.title.",
            ),
        ],
        tags=["i18n"],
        request={"application/json": FORMS_SCHEMA},
        responses={
            200: OutputSerializer,
            400: _error(
                "Malformed JSON (parse_error) or refused texts "
                "(translation_invalid, fields: locale, key, forms.<category>).",
                _FieldErrorSerializer,
            ),
            **_COMMON_ERRORS,
            **_TOO_LARGE,
        },
        examples=[
            OpenApiExample(
                "Plural forms",
                value={"one": "{count} file", "other": "{count} files"},
                request_only=True,
            )
        ],
    )
    def put(self, request: Request, id: int, locale: str, key: str) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.EDIT)
        forms: Any = request.data

        translation = bot_translation_set(bot=bot, locale=locale, key=key, forms=forms)

        data = self.OutputSerializer(translation).data

        return Response(data)


class TranslationCoverageApi(APIView):
    """Count, per locale of the live spec, the keys it uses and those missing."""

    class OutputSerializer(serializers.Serializer):
        class LocaleSerializer(serializers.Serializer):
            total = serializers.IntegerField(
                help_text="How many distinct keys the spec uses."
            )
            missing = serializers.ListField(child=serializers.CharField())

            class Meta:
                ref_name = "LocaleCoverage"

        locales = serializers.DictField(child=LocaleSerializer())

        class Meta:
            ref_name = "TranslationCoverage"

    @extend_schema(
        operation_id="translation_coverage",
        parameters=[_BOT_ID],
        tags=["i18n"],
        responses={200: OutputSerializer, **_COMMON_ERRORS},
    )
    def get(self, request: Request, id: int) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.VIEW)

        coverage = bot_translation_coverage_get(bot=bot)

        data = self.OutputSerializer({"locales": coverage}).data

        return Response(data)


_TELEGRAM_USER_ID = OpenApiParameter(
    "telegram_user_id",
    str,
    OpenApiParameter.PATH,
    description="The user's Telegram id, a positive integer.",
)
_USER_ID_ERROR = {
    400: _error("The user id is not a positive integer (code user_id_invalid)."),
}
_BOT_DATA_ERROR = {
    409: _error(
        "The bot's own privacy statement failed (code bot_data_failed, with "
        "sql_error); nothing was deleted."
    ),
}


class UserDataApi(APIView):
    """Export (GET) or delete (DELETE) everything stored about one user."""

    class ExportSerializer(serializers.Serializer):
        bot_id = serializers.IntegerField()
        telegram_user_id = serializers.IntegerField()
        conversations = serializers.ListField(child=serializers.DictField())
        processed_updates = serializers.ListField(child=serializers.DictField())
        outbound_messages = serializers.ListField(child=serializers.DictField())
        llm_requests = serializers.ListField(child=serializers.DictField())
        blocked_chats = serializers.ListField(child=serializers.DictField())
        bot_data = serializers.DictField(
            help_text="The bot's own rows (covered, rows, truncated), or covered "
            "false with a detail when its spec declares no export statement."
        )

        class Meta:
            ref_name = "UserDataExport"

    class DeleteSerializer(serializers.Serializer):
        bot_id = serializers.IntegerField()
        telegram_user_id = serializers.IntegerField()
        deleted = serializers.DictField(
            child=serializers.IntegerField(),
            help_text="Rows deleted per kind: conversations, processed_updates, "
            "outbound_messages, llm_requests, blocked_chats.",
        )
        bot_data = serializers.DictField(
            help_text="Rows the bot's delete statement returned (covered, "
            "deleted, truncated), or covered false with a detail."
        )

        class Meta:
            ref_name = "UserDataDelete"

    @extend_schema(
        operation_id="user_data_export",
        description=(
            "Everything stored about one Telegram user of the bot: their "
            "conversations (private, and their own in groups), the updates and "
            "outbound messages of those, their LLM requests and blocked-chat "
            "entry, and the bot's own rows when its spec declares privacy "
            "statements. An unknown user gets empty lists."
        ),
        parameters=[_BOT_ID, _TELEGRAM_USER_ID],
        tags=["privacy"],
        responses={
            200: ExportSerializer,
            **_USER_ID_ERROR,
            **_COMMON_ERRORS,
            **_BOT_DATA_ERROR,
        },
    )
    def get(self, request: Request, id: int, telegram_user_id: str) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.EDIT)
        user_id = telegram_user_id_parse(telegram_user_id)

        export = user_data_export(bot=bot, telegram_user_id=user_id)

        return Response(export)

    @extend_schema(
        operation_id="user_data_delete",
        description=(
            "Delete what the export shows and count it per kind. The bot's own "
            "rows go first; when its delete statement fails nothing is deleted."
        ),
        parameters=[_BOT_ID, _TELEGRAM_USER_ID],
        tags=["privacy"],
        request=None,
        responses={
            200: DeleteSerializer,
            **_USER_ID_ERROR,
            **_COMMON_ERRORS,
            **_BOT_DATA_ERROR,
        },
    )
    def delete(self, request: Request, id: int, telegram_user_id: str) -> Response:
        bot = _bot_get_or_404(id, user=request.user, level=Level.PUBLISH)
        user_id = telegram_user_id_parse(telegram_user_id)

        result = user_data_delete(bot=bot, telegram_user_id=user_id)

        return Response(result)
