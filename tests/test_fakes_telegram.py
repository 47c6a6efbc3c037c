"""The fake Telegram Bot API, driven by python-telegram-bot and httpx."""

import asyncio
import datetime as dtm
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TimedOut,
)

from tests.fakes.control import (
    FakeTelegramControl,
    start_fake_telegram_subprocess,
    stop_fake_telegram_subprocess,
)
from tests.fakes.telegram_api import FakeTelegramServer
from tests.tokens import fake_bot_token

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
TOKEN = fake_bot_token(7000000001, "fake-telegram")
OTHER_TOKEN = fake_bot_token(7000000002, "fake-telegram-other")
OLENA = 111000111
TOM = 222000222
SUPERGROUP = -1001234567890
GROUP = -4001234567
NOT_MODIFIED = (
    "Message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
# Room for a loaded CI machine in every timing assertion.
MARGIN_SECONDS = 1.5


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegramServer]:
    with FakeTelegramServer() as server:
        yield server


@pytest.fixture
def control(fake_telegram: FakeTelegramServer) -> Iterator[FakeTelegramControl]:
    with FakeTelegramControl(fake_telegram.url) as control:
        yield control


def _bot(url: str, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")


def _keyboard(*labels: str) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(label, callback_data=label) for label in labels]
    return InlineKeyboardMarkup([buttons])


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _api(url: str, method: str, token: str = TOKEN) -> str:
    return f"{url}/bot{token}/{method}"


def test_get_me_answers_the_username_and_the_id_of_the_token(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> tuple[int, str | None, bool]:
        async with _bot(fake_telegram.url) as bot:
            me = await bot.get_me()
            return me.id, me.username, me.is_bot

    assert asyncio.run(scenario()) == (7000000001, "botfactory_demo_bot", True)


def test_send_message_ids_increase_per_chat_and_chat_type_follows_the_id(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> list[tuple[int, int, str]]:
        async with _bot(fake_telegram.url) as bot:
            sent = [
                await bot.send_message(chat_id, "hello")
                for chat_id in (OLENA, OLENA, SUPERGROUP, OLENA, GROUP, SUPERGROUP)
            ]
        return [(m.chat.id, m.message_id, m.chat.type) for m in sent]

    assert asyncio.run(scenario()) == [
        (OLENA, 1, "private"),
        (OLENA, 2, "private"),
        (SUPERGROUP, 1, "supergroup"),
        (OLENA, 3, "private"),
        (GROUP, 1, "group"),
        (SUPERGROUP, 2, "supergroup"),
    ]


def test_send_message_records_reply_markup_parsed_and_echoes_it(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    async def scenario() -> InlineKeyboardMarkup | None:
        async with _bot(fake_telegram.url) as bot:
            message = await bot.send_message(
                OLENA, "Pick one", reply_markup=_keyboard("yes", "no")
            )
            return message.reply_markup

    markup = asyncio.run(scenario())

    assert markup == _keyboard("yes", "no")
    [call] = control.calls("sendMessage")
    assert call["params"] == {
        "chat_id": str(OLENA),
        "text": "Pick one",
        "reply_markup": {
            "inline_keyboard": [
                [
                    {"callback_data": "yes", "text": "yes"},
                    {"callback_data": "no", "text": "no"},
                ]
            ]
        },
    }


def test_send_message_counts_text_length_in_utf16_units(
    fake_telegram: FakeTelegramServer,
) -> None:
    # Each of these emoji is two UTF-16 code units.
    longest = "😀" * 2048

    async def scenario() -> list[str]:
        outcomes = []
        async with _bot(fake_telegram.url) as bot:
            for text in (longest, longest + "😀", "  "):
                try:
                    await bot.send_message(OLENA, text)
                    outcomes.append("sent")
                except BadRequest as error:
                    outcomes.append(error.message)
        return outcomes

    assert asyncio.run(scenario()) == [
        "sent",
        "Message is too long",
        "Message text is empty",
    ]


@pytest.mark.parametrize(
    ("text", "parse_mode", "refusal"),
    [
        # 4096 units once the markup is read, four times that as written
        ("<b>" + "&lt;" * 4096 + "</b>", "HTML", None),
        ("&lt;" * 4097, "HTML", "Bad Request: message is too long"),
        ("&lt;" * 4096, None, "Bad Request: message is too long"),
        # only &lt; &gt; &amp; &quot; and numeric references are read
        ("&nbsp;" * 683, "HTML", "Bad Request: message is too long"),
        ("&#128512;" * 2048, "HTML", None),
        ("\\." * 4096, "MarkdownV2", None),
        ("*a*" * 4095 + "[x](https://example.com/)", "MarkdownV2", None),
        ("\\." * 4097, "MarkdownV2", "Bad Request: message is too long"),
        ("<b> </b>", "HTML", "Bad Request: message text is empty"),
    ],
)
def test_send_message_counts_the_text_shown_after_its_markup_is_read(
    fake_telegram: FakeTelegramServer,
    text: str,
    parse_mode: str | None,
    refusal: str | None,
) -> None:
    params = {"chat_id": OLENA, "text": text}
    if parse_mode is not None:
        params["parse_mode"] = parse_mode

    response = httpx.post(_api(fake_telegram.url, "sendMessage"), json=params)

    status = 200 if refusal is None else 400
    assert (response.status_code, response.json().get("description")) == (
        status,
        refusal,
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("plain</b>", "Unexpected end tag at byte offset 5"),
        (
            "<b>x</i>",
            'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"',
        ),
        ("é<p>x</p>", 'Unsupported start tag "p" at byte offset 2'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("x <b", "Unclosed start tag at byte offset 2"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_html_that_telegram_cannot_parse_is_a_bad_request(
    fake_telegram: FakeTelegramServer, text: str, problem: str
) -> None:
    params = {"chat_id": OLENA, "text": text, "parse_mode": "HTML"}

    response = httpx.post(_api(fake_telegram.url, "sendMessage"), json=params)

    assert (response.status_code, response.json()["description"]) == (
        400,
        f"Bad Request: can't parse entities: {problem}",
    )


def test_html_with_every_supported_tag_is_sent(
    fake_telegram: FakeTelegramServer,
) -> None:
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>i</ins>"
        "<s>s</s><strike>s</strike><del>d</del>"
        '<span class="tg-spoiler">x</span><tg-spoiler>x</tg-spoiler>'
        '<a href="tg://user?id=1">A &amp; B</a>'
        '<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>'
        '<pre><code class="language-python">a &lt; b</code></pre>'
        "<blockquote expandable>q</blockquote> AT&T > 1"
    )

    async def scenario() -> int:
        async with _bot(fake_telegram.url) as bot:
            message = await bot.send_message(OLENA, text, parse_mode="HTML")
            return message.message_id

    assert asyncio.run(scenario()) == 1


def test_send_message_without_chat_id_or_text_is_a_bad_request(
    fake_telegram: FakeTelegramServer,
) -> None:
    url = _api(fake_telegram.url, "sendMessage")

    no_chat = httpx.post(url, json={"text": "hi"})
    no_text = httpx.post(url, json={"chat_id": OLENA})

    assert (no_chat.status_code, no_chat.json()) == (
        400,
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: chat_id is empty",
        },
    )
    assert no_text.json()["description"] == "Bad Request: message text is empty"


def test_edit_to_the_same_content_is_not_modified(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> tuple[str, str]:
        async with _bot(fake_telegram.url) as bot:
            sent = await bot.send_message(OLENA, "Menu", reply_markup=_keyboard("a"))
            with pytest.raises(BadRequest) as same_text:
                await bot.edit_message_text(
                    "Menu",
                    chat_id=OLENA,
                    message_id=sent.message_id,
                    reply_markup=_keyboard("a"),
                )
            with pytest.raises(BadRequest) as same_markup:
                await bot.edit_message_reply_markup(
                    chat_id=OLENA,
                    message_id=sent.message_id,
                    reply_markup=_keyboard("a"),
                )
        return same_text.value.message, same_markup.value.message

    assert asyncio.run(scenario()) == (NOT_MODIFIED, NOT_MODIFIED)


def test_edit_of_an_unknown_message_is_not_found(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> tuple[str, str]:
        async with _bot(fake_telegram.url) as bot:
            await bot.send_message(OLENA, "only message")
            with pytest.raises(BadRequest) as text_error:
                await bot.edit_message_text("new", chat_id=OLENA, message_id=2)
            with pytest.raises(BadRequest) as markup_error:
                await bot.edit_message_reply_markup(
                    chat_id=TOM, message_id=1, reply_markup=_keyboard("a")
                )
        return text_error.value.message, markup_error.value.message

    assert asyncio.run(scenario()) == (
        "Message to edit not found",
        "Message to edit not found",
    )


def test_edits_change_the_remembered_content_and_return_the_message(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> list[tuple[str | None, Any, bool]]:
        async with _bot(fake_telegram.url) as bot:
            sent = await bot.send_message(OLENA, "Step 1", reply_markup=_keyboard("a"))
            swapped = await bot.edit_message_reply_markup(
                chat_id=OLENA, message_id=sent.message_id, reply_markup=_keyboard("b")
            )
            # Without reply_markup, an edit of the text drops the keyboard.
            retexted = await bot.edit_message_text(
                "Step 2", chat_id=OLENA, message_id=sent.message_id
            )
        assert not isinstance(swapped, bool)
        assert not isinstance(retexted, bool)
        return [
            (m.text, m.reply_markup, m.edit_date is not None)
            for m in (swapped, retexted)
        ]

    assert asyncio.run(scenario()) == [
        ("Step 1", _keyboard("b"), True),
        ("Step 2", None, True),
    ]


def test_inline_messages_are_remembered_from_the_first_edit(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> tuple[bool | Any, str]:
        async with _bot(fake_telegram.url) as bot:
            first = await bot.edit_message_text(
                "Votes: 1", inline_message_id="AgAAAJ7wBQBDuqYHR2NHXK9Jl7U"
            )
            with pytest.raises(BadRequest) as repeated:
                await bot.edit_message_text(
                    "Votes: 1", inline_message_id="AgAAAJ7wBQBDuqYHR2NHXK9Jl7U"
                )
        return first, repeated.value.message

    assert asyncio.run(scenario()) == (True, NOT_MODIFIED)


def test_deleted_messages_are_forgotten(fake_telegram: FakeTelegramServer) -> None:
    async def scenario() -> tuple[bool, str, str]:
        async with _bot(fake_telegram.url) as bot:
            sent = await bot.send_message(OLENA, "bye")
            deleted = await bot.delete_message(OLENA, sent.message_id)
            with pytest.raises(BadRequest) as again:
                await bot.delete_message(OLENA, sent.message_id)
            with pytest.raises(BadRequest) as edit:
                await bot.edit_message_text(
                    "hi", chat_id=OLENA, message_id=sent.message_id
                )
        return deleted, again.value.message, edit.value.message

    assert asyncio.run(scenario()) == (
        True,
        "Message to delete not found",
        "Message to edit not found",
    )


def test_callback_answers_and_chat_actions_succeed(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    async def scenario() -> tuple[bool, bool]:
        async with _bot(fake_telegram.url) as bot:
            answered = await bot.answer_callback_query(
                "4773093825216541001", text="Saved"
            )
            acted = await bot.send_chat_action(OLENA, "typing")
        return answered, acted

    assert asyncio.run(scenario()) == (True, True)
    assert [call["params"] for call in control.calls()[1:]] == [
        {"callback_query_id": "4773093825216541001", "text": "Saved"},
        {"chat_id": str(OLENA), "action": "typing"},
    ]


def test_commands_are_stored_per_scope_and_language(
    fake_telegram: FakeTelegramServer,
) -> None:
    default = [BotCommand("start", "Start over"), BotCommand("help", "Help")]
    ukrainian = [BotCommand("start", "Почати")]
    olena_only = [BotCommand("cancel", "Stop")]

    async def scenario() -> list[tuple[BotCommand, ...]]:
        async with _bot(fake_telegram.url) as bot:
            await bot.set_my_commands(default)
            await bot.set_my_commands(ukrainian, language_code="uk")
            await bot.set_my_commands(olena_only, scope=BotCommandScopeChat(OLENA))
            return [
                await bot.get_my_commands(),
                await bot.get_my_commands(language_code="uk"),
                await bot.get_my_commands(scope=BotCommandScopeChat(OLENA)),
                await bot.get_my_commands(language_code="pt"),
            ]

    assert asyncio.run(scenario()) == [
        tuple(default),
        tuple(ukrainian),
        tuple(olena_only),
        (),
    ]


def test_get_updates_honours_offset_and_limit(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    updates = [
        _fixture(name)
        for name in ("private_start.json", "private_help.json", "private_cancel.json")
    ]
    control.queue_updates(TOKEN, updates)
    start, help_, cancel = (update["update_id"] for update in updates)

    async def scenario() -> list[list[int]]:
        async with _bot(fake_telegram.url) as bot:
            batches = [
                await bot.get_updates(limit=2),
                await bot.get_updates(offset=help_),
                await bot.get_updates(),
                await bot.get_updates(offset=cancel + 1),
            ]
        return [[update.update_id for update in batch] for batch in batches]

    assert asyncio.run(scenario()) == [
        [start, help_],
        [help_, cancel],
        [help_, cancel],
        [],
    ]


def test_get_updates_long_poll_returns_as_soon_as_an_update_arrives(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    update = _fixture("private_start.json")
    arrival = threading.Timer(0.3, control.queue_updates, args=(TOKEN, [update]))

    async def scenario() -> tuple[list[int], float]:
        async with _bot(fake_telegram.url) as bot:
            started = time.monotonic()
            arrival.start()
            received = await bot.get_updates(timeout=4)
            return [u.update_id for u in received], time.monotonic() - started

    received, elapsed = asyncio.run(scenario())

    assert received == [update["update_id"]]
    assert 0.3 <= elapsed < 0.3 + MARGIN_SECONDS


def test_get_updates_long_poll_answers_empty_after_the_timeout(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> tuple[tuple[Update, ...], float]:
        async with _bot(fake_telegram.url) as bot:
            started = time.monotonic()
            received = await bot.get_updates(timeout=1)
            return received, time.monotonic() - started

    received, elapsed = asyncio.run(scenario())

    assert received == ()
    assert 1.0 <= elapsed < 1.0 + MARGIN_SECONDS


def test_get_updates_conflicts_while_a_webhook_is_set(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.queue_updates(TOKEN, [_fixture("private_start.json")])

    async def scenario() -> tuple[Any, str, int]:
        async with _bot(fake_telegram.url) as bot:
            await bot.set_webhook(
                "https://bots.example.com/telegram/demo",
                secret_token="s3cret-Token_1",
                allowed_updates=["message", "callback_query"],
            )
            info = await bot.get_webhook_info()
            with pytest.raises(Conflict) as conflict:
                await bot.get_updates()
            await bot.delete_webhook()
            after = await bot.get_updates()
        return info, conflict.value.message, len(after)

    info, conflict, delivered_after = asyncio.run(scenario())

    assert (info.url, info.pending_update_count, info.allowed_updates) == (
        "https://bots.example.com/telegram/demo",
        1,
        ("message", "callback_query"),
    )
    assert info.has_custom_certificate is False
    assert conflict == (
        "Conflict: can't use getUpdates method while webhook is active; "
        "use deleteWebhook to delete the webhook first"
    )
    assert delivered_after == 1
    [set_call] = control.calls("setWebhook")
    assert set_call["params"] == {
        "url": "https://bots.example.com/telegram/demo",
        "secret_token": "s3cret-Token_1",
        "allowed_updates": ["message", "callback_query"],
    }


def test_set_webhook_can_drop_pending_updates_and_reports_errors(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.queue_updates(TOKEN, [_fixture("private_help.json")])
    control.set_webhook_error(TOKEN, "Connection refused", date=1767261600)

    async def scenario() -> Any:
        async with _bot(fake_telegram.url) as bot:
            await bot.set_webhook(
                "https://bots.example.com/hook", drop_pending_updates=True
            )
            return await bot.get_webhook_info()

    info = asyncio.run(scenario())

    assert info.pending_update_count == 0
    assert info.last_error_message == "Connection refused"
    assert info.last_error_date == dtm.datetime(2026, 1, 1, 10, tzinfo=dtm.UTC)


def test_set_webhook_requires_https(fake_telegram: FakeTelegramServer) -> None:
    async def scenario() -> str:
        async with _bot(fake_telegram.url) as bot:
            with pytest.raises(BadRequest) as error:
                await bot.set_webhook("http://bots.example.com/hook")
        return error.value.message

    assert asyncio.run(scenario()) == (
        "Bad webhook: an https url must be provided for webhook"
    )


def test_fault_429_raises_retry_after_with_its_delay(
    fake_telegram: FakeTelegramServer,
    control: FakeTelegramControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    control.add_fault(method="sendMessage", status=429, parameters={"retry_after": 3})

    async def scenario() -> Any:
        async with _bot(fake_telegram.url) as bot:
            with pytest.raises(RetryAfter) as error:
                await bot.send_message(OLENA, "hello")
        return error.value.retry_after

    assert asyncio.run(scenario()) == dtm.timedelta(seconds=3)
    [call] = control.calls("sendMessage")
    assert call["status"] == 429


def test_fault_answers_the_real_envelope_with_a_default_description(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    url = _api(fake_telegram.url, "sendMessage")
    expected = {
        429: "Too Many Requests: retry after 7",
        403: "Forbidden: bot was blocked by the user",
        400: "Bad Request: chat not found",
        500: "Internal Server Error",
    }
    answers = {}

    for status in expected:
        parameters = {"retry_after": 7} if status == 429 else None
        control.add_fault(status=status, parameters=parameters, times=1)
        answers[status] = httpx.post(url, json={"chat_id": OLENA, "text": "hi"})

    for status, description in expected.items():
        body = {"ok": False, "error_code": status, "description": description}
        if status == 429:
            body["parameters"] = {"retry_after": 7}
        assert (answers[status].status_code, answers[status].json()) == (status, body)


def test_fault_times_counts_down_and_the_rule_disappears(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="sendMessage", status=400, times=2)

    async def scenario() -> list[str]:
        outcomes = []
        async with _bot(fake_telegram.url) as bot:
            for _ in range(3):
                try:
                    await bot.send_message(OLENA, "hello")
                    outcomes.append("sent")
                except BadRequest as error:
                    outcomes.append(error.message)
                outcomes.append(str([rule["times"] for rule in control.faults()]))
        return outcomes

    assert asyncio.run(scenario()) == [
        "Chat not found",
        "[1]",
        "Chat not found",
        "[]",
        "sent",
        "[]",
    ]
    assert [call["status"] for call in control.calls("sendMessage")] == [
        400,
        400,
        200,
    ]


def test_fault_narrowed_by_chat_id_and_token_spares_other_calls(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(token=TOKEN, chat_id=TOM, status=403)

    async def scenario() -> list[str]:
        outcomes = []
        async with (
            _bot(fake_telegram.url) as bot,
            _bot(fake_telegram.url, OTHER_TOKEN) as other_bot,
        ):
            for sender, chat_id in ((bot, OLENA), (other_bot, TOM), (bot, TOM)):
                try:
                    await sender.send_message(chat_id, "hello")
                    outcomes.append("sent")
                except Forbidden as error:
                    outcomes.append(error.message)
        return outcomes

    assert asyncio.run(scenario()) == [
        "sent",
        "sent",
        "Forbidden: bot was blocked by the user",
    ]


def test_fault_migrate_to_chat_id_raises_chat_migrated(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(
        chat_id=GROUP,
        status=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        parameters={"migrate_to_chat_id": SUPERGROUP},
    )

    async def scenario() -> int:
        async with _bot(fake_telegram.url) as bot:
            with pytest.raises(ChatMigrated) as error:
                await bot.send_message(GROUP, "hello")
        return error.value.new_chat_id

    assert asyncio.run(scenario()) == SUPERGROUP


def test_fault_delay_ms_delays_a_successful_answer(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="sendMessage", delay_ms=500)

    async def scenario() -> tuple[int, float]:
        async with _bot(fake_telegram.url) as bot:
            started = time.monotonic()
            message = await bot.send_message(OLENA, "slow")
            return message.message_id, time.monotonic() - started

    message_id, elapsed = asyncio.run(scenario())

    assert message_id == 1
    assert 0.5 <= elapsed < 0.5 + MARGIN_SECONDS


def test_fault_hang_ends_with_the_client_timeout_and_blocks_nothing_else(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="sendMessage", chat_id=TOM, hang=True)

    async def scenario() -> tuple[bool, float]:
        async with _bot(fake_telegram.url) as bot:
            started = time.monotonic()
            hung = asyncio.create_task(
                bot.send_message(TOM, "never answered", read_timeout=1.0)
            )
            await asyncio.sleep(0.2)
            await bot.send_message(OLENA, "answered")
            hung_still_waiting = not hung.done()
            with pytest.raises(TimedOut):
                await hung
            return hung_still_waiting, time.monotonic() - started

    hung_still_waiting, elapsed = asyncio.run(scenario())

    assert hung_still_waiting
    assert 1.0 <= elapsed < 1.0 + MARGIN_SECONDS
    calls = control.calls("sendMessage")
    assert [(c["params"]["chat_id"], c["status"]) for c in calls] == [
        (str(TOM), 0),
        (str(OLENA), 200),
    ]


def test_clearing_faults_lets_go_of_hung_calls(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="getMe", hang=True)
    url = _api(fake_telegram.url, "getMe")

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(httpx.post, url, timeout=10)
        deadline = time.monotonic() + 5
        while not control.calls("getMe") and time.monotonic() < deadline:
            time.sleep(0.02)
        control.clear_faults()

        with pytest.raises(httpx.RemoteProtocolError):
            pending.result(timeout=3)

    assert control.faults() == []
    assert httpx.post(url).json()["ok"] is True


def test_an_empty_fault_matches_every_call_and_changes_nothing_but_its_count(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    added = httpx.post(f"{fake_telegram.url}/_faults", json={})
    control.add_fault(status=500)

    answers = [
        httpx.post(
            _api(fake_telegram.url, method), json={"chat_id": OLENA, "text": "a"}
        )
        for method in ("sendMessage", "getMe")
    ]

    assert added.json() == {"ok": True}
    assert [answer.status_code for answer in answers] == [200, 200]
    assert control.faults() == [
        {
            "method": None,
            "token": None,
            "chat_id": None,
            "status": None,
            "description": None,
            "parameters": None,
            "delay_ms": 0,
            "delay_after_ms": 0,
            "hang": False,
            "times": None,
        },
        {
            "method": None,
            "token": None,
            "chat_id": None,
            "status": 500,
            "description": None,
            "parameters": None,
            "delay_ms": 0,
            "delay_after_ms": 0,
            "hang": False,
            "times": None,
        },
    ]
    cleared = httpx.delete(f"{fake_telegram.url}/_faults")
    assert cleared.json() == {"ok": True}
    assert control.faults() == []


def test_the_first_matching_fault_applies_and_the_next_takes_over_when_it_ends(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="sendMessage", chat_id=TOM, status=403, times=1)
    control.add_fault(method="sendMessage", status=502, times=2)
    control.add_fault(method="sendMessage", status=429, parameters={"retry_after": 1})
    url = _api(fake_telegram.url, "sendMessage")

    for chat_id in (OLENA, TOM, TOM, OLENA, TOM):
        httpx.post(url, json={"chat_id": chat_id, "text": "hi"})

    calls = control.calls("sendMessage")
    assert [(call["params"]["chat_id"], call["status"]) for call in calls] == [
        (OLENA, 502),
        (TOM, 403),
        (TOM, 502),
        (OLENA, 429),
        (TOM, 429),
    ]
    assert [rule["status"] for rule in control.faults()] == [429]


def test_fault_delay_after_ms_keeps_the_message_and_holds_the_answer(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    # given a fault that holds the answer after the call was carried out
    control.add_fault(method="sendMessage", delay_after_ms=5000, times=1)
    url = _api(fake_telegram.url, "sendMessage")

    # when the client gives up before the answer
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"chat_id": OLENA, "text": "kept"}, timeout=0.5)
    waited = time.monotonic() - started

    # then the call is recorded as answered 200 and the message was kept: the
    # next one in the chat is number 2
    assert 0.5 <= waited < 0.5 + MARGIN_SECONDS
    [held] = control.calls("sendMessage")
    assert (held["params"]["text"], held["status"]) == ("kept", 200)
    second = httpx.post(url, json={"chat_id": OLENA, "text": "next"})
    assert second.json()["result"]["message_id"] == 2


def test_fault_delay_after_ms_answers_once_the_delay_is_over(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    control.add_fault(method="sendMessage", status=500, delay_after_ms=400)

    started = time.monotonic()
    answer = httpx.post(
        _api(fake_telegram.url, "sendMessage"), json={"chat_id": OLENA, "text": "a"}
    )

    assert 0.4 <= time.monotonic() - started < 0.4 + MARGIN_SECONDS
    assert answer.json() == {
        "ok": False,
        "error_code": 500,
        "description": "Internal Server Error",
    }
    assert [call["status"] for call in control.calls()] == [500]


@pytest.mark.parametrize(
    "rule",
    [
        {"delay_after_ms": -1},
        {"delay_after_ms": "soon"},
        {"delay_ms": True},
        {"times": True},
        {"status": True},
        {"chat_id": [1]},
    ],
)
def test_a_fault_of_the_wrong_type_is_a_400_and_adds_nothing(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl, rule: Any
) -> None:
    answer = httpx.post(f"{fake_telegram.url}/_faults", json=rule)

    assert answer.status_code == 400
    assert answer.json()["ok"] is False
    assert control.faults() == []


def test_form_and_multipart_bodies_are_recorded_as_sent(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    url = _api(fake_telegram.url, "sendMessage")
    markup = {"inline_keyboard": [[{"text": "Так", "callback_data": "yes"}]]}
    form = {"chat_id": str(OLENA), "text": "Привіт", "reply_markup": json.dumps(markup)}

    as_form = httpx.post(url, data=form)
    as_multipart = httpx.post(
        url,
        data=form,
        files={"document": ("menu.txt", b"three bytes", "text/plain")},
    )

    assert (as_form.status_code, as_multipart.status_code) == (200, 200)
    assert as_form.json()["result"]["reply_markup"] == markup
    form_call, multipart_call = control.calls("sendMessage")
    assert form_call["params"] == {
        "chat_id": str(OLENA),
        "text": "Привіт",
        "reply_markup": markup,
    }
    assert multipart_call["params"] == {
        "chat_id": str(OLENA),
        "text": "Привіт",
        "reply_markup": markup,
        "document": {"filename": "menu.txt", "content_type": "text/plain", "size": 11},
    }


def test_json_bodies_and_query_strings_are_recorded_as_sent(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    url = _api(fake_telegram.url, "sendMessage")

    httpx.post(
        url, json={"chat_id": OLENA, "text": "json", "disable_notification": True}
    )
    httpx.get(url, params={"chat_id": TOM, "text": "query"})

    assert [call["params"] for call in control.calls("sendMessage")] == [
        {"chat_id": OLENA, "text": "json", "disable_notification": True},
        {"chat_id": str(TOM), "text": "query"},
    ]


def test_calls_are_recorded_in_order_with_method_status_and_time(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    before = time.time()
    httpx.post(_api(fake_telegram.url, "SENDMESSAGE"), json={"chat_id": 1, "text": "a"})
    httpx.post(_api(fake_telegram.url, "getme", OTHER_TOKEN))
    httpx.post(_api(fake_telegram.url, "sendMessage"), json={"chat_id": 1})
    after = time.time()

    calls = control.calls()

    assert [{k: v for k, v in call.items() if k != "at"} for call in calls] == [
        {
            "method": "sendMessage",
            "token": TOKEN,
            "params": {"chat_id": 1, "text": "a"},
            "status": 200,
        },
        {"method": "getMe", "token": OTHER_TOKEN, "params": {}, "status": 200},
        {
            "method": "sendMessage",
            "token": TOKEN,
            "params": {"chat_id": 1},
            "status": 400,
        },
    ]
    assert before <= calls[0]["at"] <= calls[1]["at"] <= calls[2]["at"] <= after
    assert [c["method"] for c in control.calls(token=OTHER_TOKEN)] == ["getMe"]
    assert len(control.calls("sendmessage")) == 2


def test_deleting_calls_keeps_the_message_id_counters(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    url = _api(fake_telegram.url, "sendMessage")
    httpx.post(url, json={"chat_id": OLENA, "text": "one"})

    cleared = httpx.delete(f"{fake_telegram.url}/_calls")
    second = httpx.post(url, json={"chat_id": OLENA, "text": "two"})

    assert cleared.json() == {"ok": True}
    assert second.json()["result"]["message_id"] == 2
    assert [call["params"]["text"] for call in control.calls()] == ["two"]


def test_unknown_methods_and_routes_answer_404_json(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    not_found = {"ok": False, "error_code": 404, "description": "Not Found"}

    answers = [
        httpx.post(_api(fake_telegram.url, "sendTelepathy"), json={}),
        httpx.get(f"{fake_telegram.url}/file/bot{TOKEN}/photos/file_1.jpg"),
        httpx.get(f"{fake_telegram.url}/nowhere"),
        httpx.get(f"{fake_telegram.url}/botno-colon/getMe"),
    ]

    assert [(a.status_code, a.json()) for a in answers] == [(404, not_found)] * 4
    assert [c["method"] for c in control.calls()] == ["sendTelepathy", "getMe"]


def test_malformed_token_raises_invalid_token(
    fake_telegram: FakeTelegramServer,
) -> None:
    async def scenario() -> None:
        async with _bot(fake_telegram.url, "not-a-token") as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        asyncio.run(scenario())


def test_bad_input_answers_400_and_the_server_keeps_serving(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    url = _api(fake_telegram.url, "sendMessage")
    json_header = {"Content-Type": "application/json"}

    bad_json = httpx.post(url, content=b"{not json", headers=json_header)
    bad_markup = httpx.post(
        url, data={"chat_id": "1", "text": "a", "reply_markup": "{"}
    )
    bad_control = httpx.post(f"{fake_telegram.url}/_faults", json={"stauts": 500})
    bad_updates = httpx.post(f"{fake_telegram.url}/_updates", json={"token": TOKEN})

    assert (bad_json.status_code, bad_json.json()["description"]) == (
        400,
        "Bad Request: can't parse JSON object",
    )
    assert bad_markup.json()["description"] == (
        "Bad Request: can't parse reply_markup JSON object"
    )
    assert (bad_control.status_code, bad_updates.status_code) == (400, 400)
    assert control.faults() == []
    assert httpx.post(url, json={"chat_id": 1, "text": "still here"}).status_code == 200


def test_subprocess_starts_serves_and_stops() -> None:
    process, url = start_fake_telegram_subprocess(username="other_demo_bot")
    try:
        with FakeTelegramControl(url) as control:
            control.queue_updates(TOKEN, [_fixture("private_start.json")])

            async def scenario() -> tuple[str | None, int]:
                async with _bot(url) as bot:
                    return bot.username, len(await bot.get_updates())

            assert asyncio.run(scenario()) == ("other_demo_bot", 1)
            assert [c["method"] for c in control.calls()] == ["getMe", "getUpdates"]
    finally:
        exit_code = stop_fake_telegram_subprocess(process)

    assert exit_code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_calls")


def test_fixture_corpus_parses_as_updates_with_unique_ids() -> None:
    payloads = {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(FIXTURES.glob("*.json"))
    }

    updates = [Update.de_json(payload, None) for payload in payloads.values()]

    assert len(payloads) >= 36
    update_ids = [update.update_id for update in updates]
    assert len(set(update_ids)) == len(update_ids)


def test_fixture_corpus_is_delivered_whole_by_get_updates(
    fake_telegram: FakeTelegramServer, control: FakeTelegramControl
) -> None:
    payloads = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(FIXTURES.glob("*.json"))
    ]
    control.queue_updates(TOKEN, payloads)

    async def scenario() -> list[int]:
        async with _bot(fake_telegram.url) as bot:
            return [update.update_id for update in await bot.get_updates()]

    assert asyncio.run(scenario()) == [payload["update_id"] for payload in payloads]


def test_fixture_readme_lists_every_file_once() -> None:
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")

    listed = [
        line.split("`")[1] for line in readme.splitlines() if line.startswith("- `")
    ]

    assert sorted(listed) == sorted(path.name for path in FIXTURES.glob("*.json"))
