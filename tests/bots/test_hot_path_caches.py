"""The per-process spec cache and the one-task-per-chat rule of the outbox."""

import json
from pathlib import Path
from typing import Any

import pytest

from bots import selectors
from bots.models import Bot, OutboundMessage, SpecVersion
from bots.services import outbox, outbox_wake
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

pytestmark = pytest.mark.django_db

DEMO_SPEC = json.loads(
    (Path(__file__).resolve().parents[2] / "bots" / "demo" / "spec.json").read_text()
)
CHAT = 515151


@pytest.fixture(autouse=True)
def empty_spec_cache() -> Any:
    with selectors._spec_lock:
        selectors._spec_by_content.clear()
        selectors._content_by_version.clear()
    yield


def _version(bot: Bot, number: int, source: dict[str, Any]) -> SpecVersion:
    return SpecVersion.objects.create(bot=bot, number=number, source=source)


def test_versions_with_the_same_content_share_one_parsed_spec() -> None:
    first = _version(BotFactory.create(), 1, DEMO_SPEC)
    second = _version(BotFactory.create(), 1, json.loads(json.dumps(DEMO_SPEC)))

    spec_a = selectors.spec_get_by_id(version_id=first.pk)
    spec_b = selectors.spec_get_by_id(version_id=second.pk)

    assert spec_a is spec_b
    assert list(selectors._content_by_version) == [first.pk, second.pk]
    assert len(selectors._spec_by_content) == 1


def test_distinct_contents_are_kept_apart_and_bounded(settings: Any) -> None:
    settings.SPEC_CACHE_SIZE = 2
    bot = BotFactory.create()
    versions = []
    for number in (1, 2, 3):
        source = json.loads(json.dumps(DEMO_SPEC))
        source["idle_expiry_seconds"] = 3600 * number
        versions.append(_version(bot, number, source))

    specs = [selectors.spec_get_by_id(version_id=v.pk) for v in versions]

    assert [spec.idle_expiry_seconds for spec in specs] == [3600, 7200, 10800]
    # The oldest content was dropped; reading it again parses it anew.
    assert len(selectors._spec_by_content) == 2
    again = selectors.spec_get_by_id(version_id=versions[0].pk)
    assert again is not specs[0]
    assert again.idle_expiry_seconds == 3600


def _row(bot: Bot, text: str) -> OutboundMessage:
    return OutboundMessage.objects.create(
        bot=bot,
        chat_id=CHAT,
        method="sendMessage",
        payload={"chat_id": CHAT, "text": text},
    )


def test_a_chat_with_a_send_task_waiting_gets_no_second_one(
    telegram_api: FakeTelegramControl,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    bot = BotFactory.create()
    published: list[tuple[int, int]] = []
    monkeypatch.setattr(
        outbox_wake,
        "send_enqueue",
        lambda bot_id, chat_id, countdown=0.0: published.append((bot_id, chat_id)),
    )
    for text in ("one", "two"):
        with django_capture_on_commit_callbacks(execute=True):
            _row(bot, text)
            outbox.outbox_schedule(bot_id=bot.pk, chat_ids={CHAT})

    assert published == [(bot.pk, CHAT)]

    # The task that runs forgets the mark before it reads the outbox, so
    # both rows go, and a row after it gets a task of its own.
    assert outbox.outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 2
    with django_capture_on_commit_callbacks(execute=True):
        _row(bot, "three")
        outbox.outbox_schedule(bot_id=bot.pk, chat_ids={CHAT})

    assert published == [(bot.pk, CHAT), (bot.pk, CHAT)]
    assert [c["params"]["text"] for c in telegram_api.calls()] == ["one", "two"]


def test_a_failed_publish_leaves_no_mark_behind(
    telegram_api: FakeTelegramControl,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    bot = BotFactory.create()
    attempts: list[int] = []

    def broker_down(bot_id: int, chat_id: int, countdown: float = 0.0) -> None:
        attempts.append(chat_id)
        raise ConnectionError("broker down")

    monkeypatch.setattr(outbox_wake, "send_enqueue", broker_down)
    for text in ("one", "two"):
        with django_capture_on_commit_callbacks(execute=True):
            _row(bot, text)
            outbox.outbox_schedule(bot_id=bot.pk, chat_ids={CHAT})

    # Each commit tried again: the mark of a task that was never queued
    # would have held the chat until the sweep.
    assert attempts == [CHAT, CHAT]
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == [
        "pending",
        "pending",
    ]
