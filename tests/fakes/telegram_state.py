"""What the fake Telegram Bot API remembers, and how its methods behave.

Everything lives behind one condition variable, so the threaded HTTP server
can call in from any request thread and long polls can wait for updates.
"""

import re
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from tests.fakes.telegram_params import (
    BotApiError,
    bool_param,
    chat_for_id,
    check_commands,
    commands_scope_key,
    inline_markup,
    int_param,
    is_blank,
    missing_param,
    text_param,
)

DEFAULT_USERNAME = "botfactory_demo_bot"

# The real API holds a long poll for up to 50 seconds; tests should not.
MAX_POLL_SECONDS = 5.0
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and "
    "reply markup are exactly the same as a current content and reply markup "
    "of the message"
)
HTTPS_REQUIRED = "An HTTPS URL must be provided for webhook"
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: (
        "Conflict: terminated by other getUpdates request; "
        "make sure that only one bot instance is running"
    ),
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass
class FaultRule:
    """A rule that makes matching Bot API calls fail, wait or hang.

    Every field is optional. method, token and chat_id narrow what it
    matches (chat_id compared as a string). The first matching rule in
    insertion order applies and counts its times down, disappearing at 0;
    without times it lasts until cleared. With a status the call fails with
    that error after delay_ms; without one it succeeds after delay_ms; with
    hang it is held open and never answered. delay_after_ms holds the answer
    after the call was carried out and recorded with its status: a message
    is kept, and a client that gives up meanwhile never learns it was sent.
    """

    method: str | None = None
    token: str | None = None
    chat_id: str | None = None
    status: int | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    delay_ms: float = 0
    delay_after_ms: float = 0
    hang: bool = False
    times: int | None = None

    @classmethod
    def from_json(cls, data: Any) -> "FaultRule":
        """Build a rule from a control request; raise BotApiError if invalid."""
        if not isinstance(data, dict):
            raise BotApiError(400, "Bad Request: a fault rule must be an object")
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise BotApiError(400, f"Bad Request: unknown fault fields {unknown}")

        rule = cls(**data)
        if rule.chat_id is not None:
            if isinstance(rule.chat_id, bool) or not isinstance(
                rule.chat_id, int | str
            ):
                raise BotApiError(
                    400, "Bad Request: chat_id must be an integer or a string"
                )
            rule.chat_id = str(rule.chat_id)
        _check_fault(rule)

        return rule

    def matches(self, method: str, token: str, chat_id: str | None) -> bool:
        return (
            (self.method is None or self.method.lower() == method.lower())
            and (self.token is None or self.token == token)
            and (self.chat_id is None or self.chat_id == chat_id)
        )

    def error(self) -> BotApiError:
        assert self.status is not None
        description = self.description or _default_description(
            self.status, self.parameters
        )

        return BotApiError(self.status, description, self.parameters)


@dataclass
class Call:
    method: str
    token: str
    params: dict[str, Any]
    # The HTTP status answered; 0 until then, and for good if a hang fault
    # holds the call open.
    status: int
    at: float


@dataclass
class _Message:
    chat: dict[str, Any]
    date: int
    text: str
    reply_markup: dict[str, Any] | None
    edit_date: int | None = None

    def as_json(self, message_id: int, sender: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": sender,
            "chat": self.chat,
            "date": self.date,
        }
        if self.edit_date is not None:
            message["edit_date"] = self.edit_date
        message["text"] = self.text
        if self.reply_markup is not None:
            message["reply_markup"] = self.reply_markup

        return message


def _check_fault(rule: FaultRule) -> None:
    for name in ("method", "token", "description"):
        if not isinstance(getattr(rule, name), str | None):
            raise BotApiError(400, f"Bad Request: {name} must be a string")
    if rule.status is not None and not (
        _is_integer(rule.status) and 400 <= rule.status <= 599
    ):
        raise BotApiError(400, "Bad Request: fault status must be 400-599")
    for name in ("delay_ms", "delay_after_ms"):
        delay = getattr(rule, name)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise BotApiError(400, f"Bad Request: {name} must be a number >= 0")
    if rule.times is not None and not (_is_integer(rule.times) and rule.times > 0):
        raise BotApiError(400, "Bad Request: times must be a positive integer")
    if not isinstance(rule.hang, bool):
        raise BotApiError(400, "Bad Request: hang must be a boolean")
    if rule.parameters is not None and not isinstance(rule.parameters, dict):
        raise BotApiError(400, "Bad Request: parameters must be an object")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _default_description(status: int, parameters: dict[str, Any] | None) -> str:
    retry_after = (parameters or {}).get("retry_after")
    if status == 429 and retry_after is not None:
        return f"Too Many Requests: retry after {retry_after}"

    return DEFAULT_DESCRIPTIONS.get(status, f"Error {status}")


class FakeTelegramState:
    """Calls, messages, commands, webhooks, queued updates and fault rules."""

    def __init__(self, *, username: str = DEFAULT_USERNAME) -> None:
        self.username = username
        self._lock = threading.Condition()
        self._stopping = False
        self._calls: list[Call] = []
        self._faults: list[FaultRule] = []
        self._release = threading.Event()
        self._last_message_id: dict[tuple[str, int], int] = {}
        self._messages: dict[tuple[str, int, int], _Message] = {}
        self._inline_messages: dict[tuple[str, str], _Message] = {}
        self._commands: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._webhooks: dict[str, dict[str, Any]] = {}
        self._webhook_errors: dict[str, tuple[int, str]] = {}
        self._updates: dict[str, list[dict[str, Any]]] = {}
        self._methods = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
        }
        self._canonical = {name.lower(): name for name in self._methods}

    # Control side.

    def stop(self) -> None:
        """Release hung requests and end long polls, so the server can close."""
        with self._lock:
            self._stopping = True
            self._release.set()
            self._lock.notify_all()

    def canonical_method(self, name: str) -> str:
        return self._canonical.get(name.lower(), name)

    def record_call(self, method: str, token: str, params: dict[str, Any]) -> Call:
        call = Call(method=method, token=token, params=params, status=0, at=time.time())
        with self._lock:
            self._calls.append(call)

        return call

    def set_status(self, call: Call, status: int) -> None:
        with self._lock:
            call.status = status

    def calls(
        self, *, method: str | None = None, token: str | None = None
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [
                asdict(call)
                for call in self._calls
                if (method is None or call.method.lower() == method.lower())
                and (token is None or call.token == token)
            ]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def add_fault(self, rule: FaultRule) -> None:
        with self._lock:
            self._faults.append(rule)

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._faults]

    def clear_faults(self) -> None:
        """Forget every rule and let go of the requests they hold open."""
        with self._lock:
            self._faults.clear()
            self._release.set()
            self._release = threading.Event()

    def take_fault(
        self, method: str, token: str, chat_id: str | None
    ) -> tuple[FaultRule, threading.Event] | None:
        """Return the first matching rule, counting down its times."""
        with self._lock:
            for rule in self._faults:
                if not rule.matches(method, token, chat_id):
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._faults.remove(rule)
                return replace(rule), self._release

        return None

    def queue_updates(self, token: str, updates: list[dict[str, Any]]) -> None:
        with self._lock:
            self._updates.setdefault(token, []).extend(updates)
            self._lock.notify_all()

    def set_webhook_error(self, token: str, message: str, date: int) -> None:
        with self._lock:
            self._webhook_errors[token] = (date, message)

    # Bot API side.

    def invoke(self, method: str, token: str, params: dict[str, Any]) -> Any:
        """Run a Bot API method; raise BotApiError as the real API would fail."""
        handler = self._methods.get(method)
        if handler is None:
            raise BotApiError(404, "Not Found")

        return handler(token, params)

    def _bot_user(self, token: str) -> dict[str, Any]:
        first_name = self.username.removesuffix("_bot").replace("_", " ").title()

        return {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": first_name or "Bot",
            "username": self.username,
        }

    def _get_me(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._bot_user(token),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _send_message(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = int_param(params, "chat_id")
        text = text_param(params)
        markup = inline_markup(params)

        with self._lock:
            message_id = self._last_message_id.get((token, chat_id), 0) + 1
            self._last_message_id[(token, chat_id)] = message_id
            message = _Message(
                chat=chat_for_id(chat_id),
                date=int(time.time()),
                text=text,
                reply_markup=markup,
            )
            self._messages[(token, chat_id, message_id)] = message

            return message.as_json(message_id, self._bot_user(token))

    def _edit_message_text(self, token: str, params: dict[str, Any]) -> Any:
        return self._edit(token, params, text=text_param(params))

    def _edit_message_reply_markup(self, token: str, params: dict[str, Any]) -> Any:
        return self._edit(token, params, text=None)

    def _edit(self, token: str, params: dict[str, Any], *, text: str | None) -> Any:
        markup = inline_markup(params)
        inline_message_id = params.get("inline_message_id")
        if not is_blank(inline_message_id):
            return self._edit_inline(token, str(inline_message_id), text, markup)

        chat_id = int_param(params, "chat_id")
        message_id = int_param(params, "message_id")

        with self._lock:
            message = self._messages.get((token, chat_id, message_id))
            if message is None:
                raise BotApiError(400, "Bad Request: message to edit not found")
            new_text = message.text if text is None else text
            if (new_text, markup) == (message.text, message.reply_markup):
                raise BotApiError(400, NOT_MODIFIED)

            message.text = new_text
            message.reply_markup = markup
            message.edit_date = int(time.time())

            return message.as_json(message_id, self._bot_user(token))

    def _edit_inline(
        self,
        token: str,
        inline_message_id: str,
        text: str | None,
        markup: dict[str, Any] | None,
    ) -> bool:
        # Inline messages are posted by users through inline mode, never
        # through this API, so any id is accepted; its content is known from
        # the first edit on.
        key = (token, inline_message_id)
        with self._lock:
            message = self._inline_messages.get(key)
            old_text = message.text if message else ""
            new_text = old_text if text is None else text
            if message and (new_text, markup) == (message.text, message.reply_markup):
                raise BotApiError(400, NOT_MODIFIED)

            self._inline_messages[key] = _Message(
                chat={}, date=int(time.time()), text=new_text, reply_markup=markup
            )

        return True

    def _delete_message(self, token: str, params: dict[str, Any]) -> bool:
        chat_id = int_param(params, "chat_id")
        message_id = int_param(params, "message_id")

        with self._lock:
            if self._messages.pop((token, chat_id, message_id), None) is None:
                raise BotApiError(400, "Bad Request: message to delete not found")

        return True

    def _answer_callback_query(self, token: str, params: dict[str, Any]) -> bool:
        if is_blank(params.get("callback_query_id")):
            raise missing_param("callback_query_id")

        return True

    def _send_chat_action(self, token: str, params: dict[str, Any]) -> bool:
        int_param(params, "chat_id")
        if params.get("action") not in CHAT_ACTIONS:
            raise BotApiError(400, "Bad Request: wrong parameter action in request")

        return True

    def _commands_key(self, token: str, params: dict[str, Any]) -> tuple[str, str, str]:
        language_code = params.get("language_code") or ""

        return (token, commands_scope_key(params.get("scope")), str(language_code))

    def _set_my_commands(self, token: str, params: dict[str, Any]) -> bool:
        commands = check_commands(params.get("commands"))
        key = self._commands_key(token, params)

        with self._lock:
            if commands:
                self._commands[key] = commands
            else:
                self._commands.pop(key, None)

        return True

    def _get_my_commands(
        self, token: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        key = self._commands_key(token, params)
        with self._lock:
            return list(self._commands.get(key, []))

    def _delete_my_commands(self, token: str, params: dict[str, Any]) -> bool:
        key = self._commands_key(token, params)
        with self._lock:
            self._commands.pop(key, None)

        return True

    def _set_webhook(self, token: str, params: dict[str, Any]) -> bool:
        url = params.get("url") or ""
        if not url:
            return self._delete_webhook(token, params)
        if not str(url).startswith("https://"):
            raise BotApiError(400, f"Bad Request: bad webhook: {HTTPS_REQUIRED}")
        secret_token = params.get("secret_token")
        if secret_token is not None and not _SECRET_TOKEN.fullmatch(str(secret_token)):
            raise BotApiError(
                400, "Bad Request: secret token contains unallowed characters"
            )

        webhook = {
            "url": url,
            "secret_token": secret_token,
            "allowed_updates": params.get("allowed_updates"),
            "drop_pending_updates": bool_param(params, "drop_pending_updates"),
            "max_connections": params.get("max_connections"),
        }
        with self._lock:
            self._webhooks[token] = webhook
            if webhook["drop_pending_updates"]:
                self._updates.pop(token, None)

        return True

    def _delete_webhook(self, token: str, params: dict[str, Any]) -> bool:
        with self._lock:
            self._webhooks.pop(token, None)
            if bool_param(params, "drop_pending_updates"):
                self._updates.pop(token, None)

        return True

    def _get_webhook_info(self, token: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            webhook = self._webhooks.get(token, {})
            info: dict[str, Any] = {
                "url": webhook.get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates.get(token, [])),
            }
            if webhook.get("max_connections") is not None:
                info["max_connections"] = int(webhook["max_connections"])
            if webhook.get("allowed_updates") is not None:
                info["allowed_updates"] = webhook["allowed_updates"]
            if token in self._webhook_errors:
                date, message = self._webhook_errors[token]
                info["last_error_date"] = date
                info["last_error_message"] = message

            return info

    def _get_updates(self, token: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int_param(params, "offset") if "offset" in params else None
        limit = int_param(params, "limit") if "limit" in params else 100
        limit = min(max(limit, 1), 100)
        timeout = int_param(params, "timeout") if "timeout" in params else 0
        deadline = time.monotonic() + min(max(timeout, 0), MAX_POLL_SECONDS)

        with self._lock:
            if token in self._webhooks:
                raise BotApiError(409, WEBHOOK_ACTIVE)
            queue = self._updates.setdefault(token, [])
            if offset is not None and offset < 0:
                del queue[: max(len(queue) + offset, 0)]
            elif offset is not None:
                queue[:] = [update for update in queue if update["update_id"] >= offset]

            while not queue and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)

            return queue[:limit]
