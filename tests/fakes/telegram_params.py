"""Reading and checking Bot API method parameters as the real API does."""

import json
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.telegram_markup import MarkupError, shown_text, utf16_units

# The Bot API counts message length in UTF-16 code units of the text shown.
MAX_TEXT_UTF16_UNITS = 4096
# The Bot API's limit for callback_data, in bytes.
MAX_CALLBACK_DATA_BYTES = 64

# Parameters the Bot API defines as JSON-serialised objects; clients send
# them as JSON strings inside form and JSON bodies.
JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "commands",
        "scope",
        "allowed_updates",
        "media",
    }
)
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")


class BotApiError(Exception):
    """A failure answered with the Bot API's error envelope."""

    def __init__(
        self,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def envelope(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters

        return body


def _parse_form(body: bytes) -> dict[str, Any]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise BotApiError(400, "Bad Request: can't parse form body") from None


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Return form fields as text, and uploaded files as name, type and size."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BotApiError(400, "Bad Request: can't parse multipart body")

    params: dict[str, Any] = {}
    for part in message.walk():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part is message or not isinstance(name, str):
            continue
        if not isinstance(payload, bytes):
            payload = b""
        filename = part.get_filename()
        if filename is None:
            charset = part.get_content_charset() or "utf-8"
            params[name] = payload.decode(charset, "replace")
        else:
            params[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(payload),
            }

    return params


def _decode_json_params(params: dict[str, Any]) -> dict[str, Any]:
    decoded = dict(params)
    for name in JSON_PARAMS & decoded.keys():
        if not isinstance(decoded[name], str):
            continue
        try:
            decoded[name] = json.loads(decoded[name])
        except json.JSONDecodeError:
            raise BotApiError(
                400, f"Bad Request: can't parse {name} JSON object"
            ) from None

    return decoded


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        return parse_json_object(body)
    if media_type == "application/x-www-form-urlencoded":
        return _parse_form(body)
    if media_type == "multipart/form-data":
        return _parse_multipart(content_type, body)

    raise BotApiError(400, f"Bad Request: unsupported content type {media_type!r}")


def missing_param(name: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {name} is empty")


def is_blank(value: Any) -> bool:
    return value is None or value == ""


def int_param(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        raise missing_param(name)
    if isinstance(value, bool):
        raise BotApiError(400, f"Bad Request: {name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        if name == "chat_id":
            raise BotApiError(400, "Bad Request: chat not found") from None
        raise BotApiError(400, f"Bad Request: {name} must be an integer") from None


def bool_param(params: dict[str, Any], name: str) -> bool:
    return params.get(name) in (True, 1, "true", "True", "1")


def text_param(params: dict[str, Any]) -> str:
    """Return the message text, refused as the Bot API refuses it.

    Its length is what it shows once ``parse_mode`` is applied, as the Bot
    API counts it.
    """
    text = params.get("text")
    parse_mode = params.get("parse_mode")
    if not isinstance(text, str):
        raise BotApiError(400, "Bad Request: message text is empty")
    try:
        shown = shown_text(text, parse_mode if isinstance(parse_mode, str) else "")
    except MarkupError as error:
        raise BotApiError(400, f"Bad Request: can't parse entities: {error}") from None
    except ValueError:
        raise BotApiError(400, "Bad Request: unsupported parse_mode") from None
    if not shown.strip():
        raise BotApiError(400, "Bad Request: message text is empty")
    if utf16_units(shown) > MAX_TEXT_UTF16_UNITS:
        raise BotApiError(400, "Bad Request: message is too long")

    return text


def inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
    """Return the inline keyboard of reply_markup; other keyboards are not echoed."""
    markup = params.get("reply_markup")
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        return None

    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BotApiError(
            400,
            'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup '
            "must be an Array of Arrays",
        )
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise BotApiError(400, "Bad Request: can't parse inline keyboard button")
        data = button.get("callback_data")
        if data is not None and not (
            isinstance(data, str)
            and 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
        ):
            raise BotApiError(400, "Bad Request: BUTTON_DATA_INVALID")

    return markup


def chat_for_id(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        chat_type = "private"
    elif str(chat_id).startswith("-100"):
        chat_type = "supergroup"
    else:
        chat_type = "group"

    return {"id": chat_id, "type": chat_type}


def commands_scope_key(scope: Any) -> str:
    if scope is None:
        scope = {"type": "default"}
    if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
        raise BotApiError(400, "Bad Request: can't parse BotCommandScope JSON object")
    normalised = {
        key: str(value) if key in ("chat_id", "user_id") else value
        for key, value in scope.items()
    }

    return json.dumps(normalised, sort_keys=True)


def check_commands(commands: Any) -> list[dict[str, Any]]:
    if not isinstance(commands, list):
        raise BotApiError(400, "Bad Request: can't parse commands JSON object")
    for command in commands:
        if not (
            isinstance(command, dict)
            and isinstance(command.get("command"), str)
            and _COMMAND_NAME.fullmatch(command["command"])
            and isinstance(command.get("description"), str)
            and 1 <= len(command["description"]) <= 256
        ):
            raise BotApiError(400, "Bad Request: BOT_COMMAND_INVALID")

    return commands


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BotApiError(400, "Bad Request: can't parse JSON object") from None
    if not isinstance(data, dict):
        raise BotApiError(400, "Bad Request: JSON body must be an object")

    return data


def parse_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Merge query and body parameters as the Bot API reads them."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if body:
        params.update(_parse_body(content_type, body))

    return _decode_json_params(params)
