"""Conversation tests: run a bot's transcripts against a spec version.

A run goes through the same service as the webhook, as a test user whose id
no Telegram user has (theirs fit 52 bits), inside a transaction that is
always rolled back, with every reply stored as delivered locally. So it
never sends anything to Telegram and leaves no conversation, processed
update or outbound message behind; real users' conversations are keyed by
their own ids and are never read.

How the runner reads a step (see ``Transcript``):

- ``say`` sends a text or a command; ``press`` presses the button with that
  exact label among those the bot offered last (a callback, or the label
  sent as text for a reply-keyboard button); ``contact`` shares the test
  user's own contact with that phone number.
- ``expect`` lists the texts of the bot's replies to the step in order:
  sent and edited messages and button notices, as plain text (HTML tags
  removed, entities decoded).
- ``buttons`` lists, flattened row by row, the labels of the keyboard the
  user is left with: that of the last reply that offered one, none after a
  message without buttons.
- ``vars`` names some of the conversation's variables and their values
  after the step; others are not compared.

The test user's first name is ``TEST_USER_FIRST_NAME`` and their language
is the transcript's locale. An ``llm.v1`` node's answer is not awaited (no
model is called): the transcript sees its "thinking" message only.
"""

import html
import json
import logging
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import transaction

from botfactory.errors import ApplicationError
from bots.models import Bot, Conversation, OutboundMessage, SpecVersion, Transcript
from bots.selectors import spec_cache_forget, spec_get
from bots.services.updates import update_process
from bots.sql import sql_applied_forget, sql_run
from dsl import Spec, spec_validate
from dsl.spec import PRIVACY_PARAM

logger = logging.getLogger(__name__)

TEST_USER_FIRST_NAME = "Tester"
# Telegram user ids fit 52 bits; these start far above, in 64-bit columns.
_TEST_USER_ID_MIN = 2**60
# Never the number of a published version, which start at 1; the scratch
# row exists only inside the rolled-back run.
_SCRATCH_VERSION_NUMBER = 0
_CLEANUP_NODE = "transcript.cleanup"
_CLEANUP_TIMEOUT_MS = 10_000
_ACTIONS = ("say", "press", "contact")
_CHECKS = ("expect", "buttons", "vars")
_TAG_RE = re.compile(r"<[^>]+>")
_NAME_MAX = 100
_LOCALE_MAX = 16


class TranscriptInvalidError(ApplicationError):
    pass


@dataclass(frozen=True)
class TranscriptResult:
    name: str
    locale: str
    is_draft: bool
    passed: bool
    # The first difference found, empty when the transcript passed.
    difference: str = ""


@dataclass(frozen=True)
class _Button:
    label: str
    callback_data: str | None
    request_contact: bool


@dataclass(frozen=True)
class _Reply:
    text: str
    # None for a notice, which neither offers nor removes buttons.
    buttons: tuple[_Button, ...] | None


class _StepFailed(Exception):
    pass


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _step_problem(step: Any) -> str:
    if not isinstance(step, dict):
        return "is not an object"
    unknown = sorted(set(step) - set(_ACTIONS) - set(_CHECKS))
    if unknown:
        return f"has an unknown key {_quote(unknown[0])}"
    actions = [name for name in _ACTIONS if name in step]
    if len(actions) != 1:
        return "must have exactly one of say, press or contact"
    if not isinstance(step[actions[0]], str) or not step[actions[0]]:
        return f"{actions[0]} must be a non-empty text"
    for name in ("expect", "buttons"):
        value = step.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{name} must be a list of texts"
    if not isinstance(step.get("vars", {}), dict):
        return "vars must be an object"

    return ""


def transcript_steps_problem(steps: Any) -> str:
    """Describe what is wrong with a steps list, or return "" when nothing."""
    if not isinstance(steps, list) or not steps:
        return "The transcript must have a non-empty list of steps."
    for number, step in enumerate(steps, start=1):
        problem = _step_problem(step)
        if problem:
            return f"Step {number} {problem}."

    return ""


def _step_label(number: int, step: dict[str, Any]) -> str:
    action = next(name for name in _ACTIONS if name in step)

    return f"step {number} ({action} {_quote(step[action])})"


def _plain(text: str, parse_mode: str | None) -> str:
    if parse_mode == "HTML":
        return html.unescape(_TAG_RE.sub("", text))
    if parse_mode == "MarkdownV2":
        return re.sub(r"\\(.)", r"\1", text)

    return text


def _buttons(markup: dict[str, Any] | None) -> tuple[_Button, ...]:
    buttons: list[_Button] = []
    for row in (markup or {}).get("inline_keyboard") or []:
        for item in row:
            buttons.append(
                _Button(str(item.get("text", "")), item.get("callback_data"), False)
            )
    for row in (markup or {}).get("keyboard") or []:
        for item in row:
            entry = item if isinstance(item, dict) else {"text": str(item)}
            buttons.append(
                _Button(
                    str(entry.get("text", "")),
                    None,
                    bool(entry.get("request_contact")),
                )
            )

    return tuple(buttons)


def _reply(message: OutboundMessage) -> _Reply | None:
    payload = message.payload
    if message.method in ("sendMessage", "editMessageText"):
        return _Reply(
            text=_plain(str(payload.get("text", "")), payload.get("parse_mode")),
            buttons=_buttons(payload.get("reply_markup")),
        )
    if message.method == "answerCallbackQuery" and payload.get("text"):
        return _Reply(text=str(payload["text"]), buttons=None)

    return None


class _Run:
    """One transcript's conversation; the caller holds the rollback."""

    def __init__(self, *, bot: Bot, locale: str, user_id: int) -> None:
        self.bot = bot
        self.locale = locale
        self.user_id = user_id
        # Negative, as local updates are, and random: the bot's records of
        # applied writes outlive the run and must not meet another's ids.
        self.first_update_id = -(secrets.randbits(62) + 1)
        self.update_id = self.first_update_id
        self.keyboard: tuple[_Button, ...] = ()
        self.keyboard_message_id = 0

    def _sender(self) -> dict[str, Any]:
        return {
            "id": self.user_id,
            "is_bot": False,
            "first_name": TEST_USER_FIRST_NAME,
            "language_code": self.locale,
        }

    def _chat(self) -> dict[str, Any]:
        return {"id": self.user_id, "type": "private"}

    def _message(self, **extra: Any) -> dict[str, Any]:
        return {
            "message": {
                "message_id": 0,
                "date": 0,
                "chat": self._chat(),
                "from": self._sender(),
                **extra,
            }
        }

    def _body(self, label: str, step: dict[str, Any]) -> dict[str, Any]:
        if "say" in step:
            return self._message(text=step["say"])
        if "contact" in step:
            contact = {
                "phone_number": step["contact"],
                "first_name": TEST_USER_FIRST_NAME,
                "user_id": self.user_id,
            }
            return self._message(contact=contact)

        button = next((b for b in self.keyboard if b.label == step["press"]), None)
        if button is None:
            offered = [b.label for b in self.keyboard]
            raise _StepFailed(
                f"{label}: there is no such button; the buttons are {_quote(offered)}"
            )
        if button.request_contact:
            raise _StepFailed(
                f"{label}: this button shares a contact; use a contact step "
                "with the phone number"
            )
        if button.callback_data is None:
            return self._message(text=button.label)

        return {
            "callback_query": {
                "id": f"transcript{abs(self.update_id)}",
                "from": self._sender(),
                "chat_instance": "transcript",
                "data": button.callback_data,
                "message": {
                    "message_id": self.keyboard_message_id,
                    "date": 0,
                    "chat": self._chat(),
                },
            }
        }

    def step(self, label: str, step: dict[str, Any]) -> list[_Reply]:
        body = self._body(label, step)
        self.update_id -= 1
        result = update_process(
            bot=self.bot, update={"update_id": self.update_id, **body}, local=True
        )

        replies: list[_Reply] = []
        for message in result.messages:
            reply = _reply(message)
            if reply is None:
                continue
            replies.append(reply)
            if reply.buttons:
                self.keyboard = reply.buttons
                target = message.telegram_message_id or message.payload.get(
                    "message_id"
                )
                self.keyboard_message_id = int(target or 0)
            elif reply.buttons is not None:
                self.keyboard = ()

        return replies

    def variables(self) -> dict[str, Any]:
        state = (
            Conversation.objects.filter(bot=self.bot, chat_id=self.user_id)
            .values_list("state", flat=True)
            .first()
        )

        return dict((state or {}).get("vars") or {})


def _replies_difference(label: str, expected: list[str], texts: list[str]) -> str:
    for index, want in enumerate(expected):
        if index >= len(texts):
            got = f"got {len(texts)} " + ("reply" if len(texts) == 1 else "replies")
            return f"{label}: reply {index + 1} should be {_quote(want)}; {got}"
        if texts[index] != want:
            return (
                f"{label}: reply {index + 1} was {_quote(texts[index])}, "
                f"expected {_quote(want)}"
            )
    if len(texts) > len(expected):
        extra = texts[len(expected)]
        return f"{label}: unexpected reply {len(expected) + 1} {_quote(extra)}"

    return ""


def _vars_difference(label: str, expected: dict[str, Any], held: dict[str, Any]) -> str:
    for name, want in expected.items():
        if name not in held:
            return f"{label}: vars.{name} is not set, expected {_quote(want)}"
        if held[name] != want:
            return (
                f"{label}: vars.{name} was {_quote(held[name])}, "
                f"expected {_quote(want)}"
            )

    return ""


def _steps_run(run: _Run, steps: list[dict[str, Any]]) -> str:
    for number, step in enumerate(steps, start=1):
        label = _step_label(number, step)
        try:
            replies = run.step(label, step)
        except _StepFailed as exc:
            return str(exc)

        if "expect" in step:
            texts = [reply.text for reply in replies]
            difference = _replies_difference(label, step["expect"], texts)
            if difference:
                return difference
        if "buttons" in step:
            offered = [button.label for button in run.keyboard]
            if offered != step["buttons"]:
                return (
                    f"{label}: the buttons were {_quote(offered)}, "
                    f"expected {_quote(step['buttons'])}"
                )
        if step.get("vars"):
            difference = _vars_difference(label, step["vars"], run.variables())
            if difference:
                return difference

    return ""


def _test_data_erase(*, bot: Bot, spec: Spec, run: "_Run") -> None:
    # The bot's own tables are written on the bot's own connection, outside
    # the rolled-back transaction: the records of the run's writes go, and
    # the spec's privacy delete removes the test user's rows.
    if not bot.allows_sql_writes:
        return
    writers = [
        node_id
        for node_id, node in spec.nodes.items()
        if getattr(node, "mode", None) == "write"
    ]
    if not writers:
        return

    for update_id in range(run.update_id, run.first_update_id + 1):
        for node_id in writers:
            sql_applied_forget(bot=bot, update_id=update_id, node_id=node_id)
    # TODO: a spec that writes but declares no privacy delete keeps the test
    # user's rows in its own tables.
    privacy = spec.privacy
    if privacy is None or privacy.delete is None:
        return
    update_id = -(secrets.randbits(62) + 1)
    outcome = sql_run(
        bot=bot,
        node_id=_CLEANUP_NODE,
        statement=privacy.delete,
        params={PRIVACY_PARAM: run.user_id},
        mode="write",
        timeout_ms=_CLEANUP_TIMEOUT_MS,
        max_rows=settings.SQL_ROW_CAP,
        update_id=update_id,
    )
    if outcome.error_code is not None:
        logger.warning("Test data of bot %s not erased: %s", bot.pk, outcome.error_code)
        return
    sql_applied_forget(bot=bot, update_id=update_id, node_id=_CLEANUP_NODE)


def transcript_run(
    *, bot: Bot, version: SpecVersion | dict[str, Any], transcript: Transcript
) -> TranscriptResult:
    """Run one transcript against a published version or a spec source.

    Never changes anything (see the module docstring). A source must be a
    valid spec: raises SpecInvalidError otherwise. Raises DatabaseError
    subclasses when the database fails.
    """
    result = TranscriptResult(
        name=transcript.name,
        locale=transcript.locale,
        is_draft=transcript.is_draft,
        passed=False,
    )
    problem = transcript_steps_problem(transcript.steps)
    if problem:
        return replace(result, difference=problem)

    spec = (
        spec_get(version=version)
        if isinstance(version, SpecVersion)
        else spec_validate(version)
    )
    runner = Bot.objects.get(pk=bot.pk)
    # An inactive bot drops updates; its tests still run.
    runner.is_active = True
    user_id = _TEST_USER_ID_MIN + secrets.randbelow(_TEST_USER_ID_MIN)
    run = _Run(bot=runner, locale=transcript.locale, user_id=user_id)
    scratch_id: int | None = None
    with transaction.atomic():
        try:
            if isinstance(version, SpecVersion):
                runner.live_version_id = version.pk
            else:
                scratch = SpecVersion.objects.create(
                    bot=runner, number=_SCRATCH_VERSION_NUMBER, source=spec.as_json()
                )
                scratch_id = runner.live_version_id = scratch.pk
            difference = _steps_run(run, transcript.steps)
        finally:
            # Forgotten before the rollback frees the id: SQLite reuses it.
            if scratch_id is not None:
                spec_cache_forget(version_id=scratch_id)
            transaction.set_rollback(True)
    _test_data_erase(bot=runner, spec=spec, run=run)

    return replace(result, passed=not difference, difference=difference)


def transcripts_run_all(
    *,
    bot: Bot,
    version: SpecVersion | dict[str, Any],
    include_drafts: bool = False,
) -> list[TranscriptResult]:
    """Run the bot's transcripts (drafts only when asked), by name.

    Raises SpecInvalidError for an invalid source.
    """
    transcripts = bot.transcripts.order_by("name")
    if not include_drafts:
        transcripts = transcripts.filter(is_draft=False)
    if not isinstance(version, SpecVersion):
        version = spec_validate(version).as_json()
    selected = list(transcripts)
    if not selected:
        return []

    return [
        transcript_run(bot=bot, version=version, transcript=transcript)
        for transcript in selected
    ]


def transcript_review(*, transcript: Transcript) -> Transcript:
    """Mark a draft transcript reviewed: from now on publishing runs it."""
    transcript.is_draft = False
    transcript.save(update_fields=["is_draft", "updated_at"])

    return transcript


def transcripts_import(*, bot: Bot, data: Any) -> int:
    """Create or replace the bot's transcripts by name; return how many.

    ``data`` is a list of ``{"name", "locale", "steps"}``; those imported
    are not drafts. Raises TranscriptInvalidError naming the first problem;
    nothing is saved then.
    """
    if not isinstance(data, list):
        raise TranscriptInvalidError(
            "Transcripts must be a list.", code="transcripts_invalid"
        )
    for index, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        locale = item.get("locale") if isinstance(item, dict) else None
        problem = (
            "needs a name of 1-100 characters"
            if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX
            else "needs a locale"
            if not isinstance(locale, str) or not 0 < len(locale) <= _LOCALE_MAX
            else transcript_steps_problem(item.get("steps"))
        )
        if problem:
            raise TranscriptInvalidError(
                f"Transcript {index + 1}: {problem}", code="transcripts_invalid"
            )

    with transaction.atomic():
        for item in data:
            Transcript.objects.update_or_create(
                bot=bot,
                name=item["name"],
                defaults={
                    "locale": item["locale"],
                    "steps": item["steps"],
                    "is_draft": False,
                },
            )

    return len(data)
