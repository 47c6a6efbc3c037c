"""The studio's "Try it": staff talk to any spec version, or the draft.

Each member of staff has one conversation per version (see
``bots.services.local_specs``), processed by the webhook's own service as
a local chat: nothing is sent to Telegram and no real user's conversation
is read or written. A draft is checked as a publish would check it, and
runs only when it has no errors. What was said and answered is kept by
the caller as a log of entries, from which a draft conversation test is
saved.
"""

import logging
from dataclasses import asdict
from typing import Any

from django.db import IntegrityError, transaction

from botfactory.errors import ApplicationError
from bots.models import Bot, Transcript
from bots.selectors import spec_get
from bots.services.local_chat import LOCAL_PHONE_NUMBER, Button, LocalChat, Reply
from bots.services.local_specs import DRAFT_NUMBER, local_chat_id
from bots.services.privacy import BotDataError, user_data_delete
from bots.services.specs import spec_check
from bots.services.transcripts import TEST_USER_FIRST_NAME
from dsl import Spec

logger = logging.getLogger(__name__)

# Telegram's limit for a message's text.
MAX_TEXT_CHARS = 4096
MAX_NAME_CHARS = 100
# A log longer than this is cut from the start: the session holds it.
MAX_LOG_ENTRIES = 200
ACTIONS = ("say", "press", "contact")


class TryChatError(ApplicationError):
    pass


def try_spec_get(*, bot: Bot, number: int) -> Spec:
    """Return the spec of version ``number``, or the checked draft for 0.

    Raises SpecRejectedError with every error of an invalid draft.
    """
    if number == DRAFT_NUMBER:
        spec, _warnings = spec_check(bot=bot, source=bot.draft_spec)
        return spec

    return spec_get(version=bot.versions.get(number=number))


def _chat(*, bot: Bot, user: Any, number: int, locale: str) -> LocalChat:
    spec = try_spec_get(bot=bot, number=number)
    if locale not in spec.locales:
        raise TryChatError(f"The spec has no locale {locale!r}.", code="unknown_locale")
    runner = Bot.objects.get(pk=bot.pk)
    # An inactive bot drops its updates; staff still try it out.
    runner.is_active = True

    return LocalChat(
        bot=runner,
        locale=locale,
        user_id=local_chat_id(staff_id=user.pk, number=number),
        # The conversation tests' user, so that a saved test replays.
        first_name=TEST_USER_FIRST_NAME,
    )


def _button_json(button: Button) -> dict[str, Any]:
    kind = (
        "url"
        if button.url is not None
        else "contact"
        if button.request_contact
        else "callback"
        if button.callback_data is not None
        else "text"
    )
    data: dict[str, Any] = {"label": button.label, "row": button.row, "kind": kind}
    if button.url is not None:
        data["url"] = button.url

    return data


def _reply_json(reply: Reply) -> dict[str, Any]:
    data = asdict(reply)
    data["buttons"] = [_button_json(button) for button in reply.buttons]

    return data


def try_chat_send(
    *, bot: Bot, user: Any, number: int, locale: str, text: str
) -> dict[str, Any]:
    """Send ``text`` (or a command) as ``user``; return the log entry.

    Raises TryChatError for an empty or too long text or a locale the spec
    lacks, and SpecRejectedError for an invalid draft; nothing is written
    then.
    """
    if not text.strip() or len(text) > MAX_TEXT_CHARS:
        raise TryChatError(
            f"Send a text of 1 to {MAX_TEXT_CHARS} characters.", code="text_invalid"
        )
    chat = _chat(bot=bot, user=user, number=number, locale=locale)
    replies = chat.send_text(text)

    return {"say": text, "replies": [_reply_json(reply) for reply in replies]}


def try_chat_press(
    *, bot: Bot, user: Any, number: int, locale: str, message_id: int, index: int
) -> dict[str, Any]:
    """Press button ``index`` of message ``message_id``; return the log entry.

    Raises TryChatError when the message shows no such button (or a link),
    as ``try_chat_send`` does otherwise; nothing is written then.
    """
    chat = _chat(bot=bot, user=user, number=number, locale=locale)
    try:
        button, replies = chat.press_on(message_id, index)
    except (IndexError, ValueError) as exc:
        raise TryChatError(str(exc), code="unknown_button") from None
    action = (
        {"contact": LOCAL_PHONE_NUMBER}
        if button.request_contact
        else {"press": button.label}
    )

    return {**action, "replies": [_reply_json(reply) for reply in replies]}


def try_chat_reset(*, bot: Bot, user: Any, number: int) -> None:
    """Forget ``user``'s conversation with version ``number``; start over.

    The test user's rows in the bot's own tables go too, through the live
    version's privacy delete, as a real user's would.
    """
    chat_id = local_chat_id(staff_id=user.pk, number=number)
    try:
        user_data_delete(bot=bot, telegram_user_id=chat_id)
    except BotDataError as exc:
        # The conversation still starts over; only the bot's rows stay.
        logger.warning(
            "Try it could not erase its rows in bot %s's tables: %s.",
            bot.pk,
            exc.extra.get("sql_error"),
        )
        LocalChat(bot=bot, user_id=chat_id).forget()


def try_transcript_steps(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return a log's entries as conversation test steps (see ``Transcript``).

    Each step expects the texts of its replies in order and the buttons the
    user is left with. An LLM answer, which arrives after its update, is
    left out: a test run does not wait for it. Never raises.
    """
    steps: list[dict[str, Any]] = []
    keyboard: list[str] = []
    for entry in log:
        action = next(name for name in ACTIONS if name in entry)
        replies = [reply for reply in entry["replies"] if not reply.get("later")]
        for reply in replies:
            if reply["kind"] in ("message", "edit") and reply["buttons"]:
                keyboard = [button["label"] for button in reply["buttons"]]
            elif reply["kind"] == "message":
                keyboard = []
        steps.append(
            {
                action: entry[action],
                "expect": [reply["text"] for reply in replies],
                "buttons": list(keyboard),
            }
        )

    return steps


def try_transcript_save(
    *, bot: Bot, user: Any, name: str, locale: str, log: list[dict[str, Any]]
) -> Transcript:
    """Save a log as a draft conversation test named ``name``.

    Raises TryChatError for an empty log, a name that is empty, too long or
    taken; nothing is saved then.
    """
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME_CHARS:
        raise TryChatError(
            f"A test needs a name of 1 to {MAX_NAME_CHARS} characters.",
            code="name_invalid",
        )
    if not log:
        raise TryChatError("Say something first.", code="nothing_to_save")

    try:
        with transaction.atomic():
            return Transcript.objects.create(
                bot=bot,
                name=name,
                locale=locale,
                steps=try_transcript_steps(log),
                is_draft=True,
                created_by=user,
            )
    except IntegrityError:
        raise TryChatError(
            f"There is already a test named {name!r}.", code="name_taken"
        ) from None
