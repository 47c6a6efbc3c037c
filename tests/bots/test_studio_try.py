"""The studio's "Try it" page: chatting with a version or the draft."""

import copy
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from bots.models import (
    Bot,
    BotAccess,
    Conversation,
    OutboundMessage,
    ProcessedUpdate,
    SpecVersion,
    Transcript,
)
from bots.services.local_specs import local_chat_id
from bots.services.transcripts import transcript_run
from tests.bots.conftest import Webhook
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

MENU_EN = "Welcome to the Café Bot, Tester! What would you like?"
MENU_EN_BUTTONS = ["☕ Order a drink", "🧾 My orders", "❓ Help"]
HELP_EN = (
    "I take drink orders for the café.\n\nPress Order a drink and answer a few "
    "questions, or see My orders.\nCommands: /order, /orders, /help, and /cancel "
    "to stop an order."
)
DRINKS_EN = ["Latte", "Cappuccino", "Americano", "Tea", "✖ Cancel"]


class TryIt:
    """The page's JSON endpoints, as its script calls them."""

    def __init__(self, client: Client, bot: Bot, version: str = "live") -> None:
        self.client = client
        self.bot = bot
        self.version = version
        self.locale = "en"

    def post(self, endpoint: str, /, **data: Any) -> Any:
        return self.client.post(
            f"/admin/bots/bot/{self.bot.pk}/studio/try/{endpoint}/",
            data=json.dumps({"version": self.version, **data}),
            content_type="application/json",
        )

    def _entry(self, response: Any) -> dict[str, Any]:
        assert response.status_code == 200, response.content
        entry: dict[str, Any] = response.json()["entry"]
        return entry

    def say(self, text: str) -> dict[str, Any]:
        return self._entry(self.post("send", locale=self.locale, text=text))

    def press(self, reply: dict[str, Any], label: str) -> dict[str, Any]:
        index = [button["label"] for button in reply["buttons"]].index(label)
        return self._entry(
            self.post(
                "press",
                locale=self.locale,
                message_id=reply["message_id"],
                index=index,
            )
        )

    def log(self) -> Any:
        return self.client.get(
            f"/admin/bots/bot/{self.bot.pk}/studio/try/log/",
            {"version": self.version},
        )


def _texts(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return [(reply["kind"], reply["text"]) for reply in entry["replies"]]


def _labels(reply: dict[str, Any]) -> list[str]:
    return [button["label"] for button in reply["buttons"]]


def _user(username: str = "ann", *, superuser: bool = True) -> Any:
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(
            username, password="pw-123456", first_name="Ann"
        )
    return model.objects.create_user(
        username, password="pw-123456", first_name="Ann", is_staff=True
    )


@pytest.fixture
def staff() -> Any:
    return _user()


@pytest.fixture
def try_it(demo_bot: Bot, staff: Any) -> TryIt:
    client = Client()
    client.force_login(staff)
    return TryIt(client, demo_bot)


def _runtime_rows(bot: Bot) -> tuple[int, int, int]:
    return (
        Conversation.objects.filter(bot=bot).count(),
        ProcessedUpdate.objects.filter(bot=bot).count(),
        OutboundMessage.objects.filter(bot=bot).count(),
    )


def _help_menu_draft(bot: Bot) -> dict[str, Any]:
    """The demo spec with Help as a menu, so pressing it edits the message."""
    draft = copy.deepcopy(bot.live_version.source)  # type: ignore[union-attr]
    draft["nodes"]["help"] = {
        "type": "menu.v1",
        "text": "help.text",
        "rows": [[{"label": "main.order", "goto": "order"}]],
    }
    return draft


def test_the_page_offers_every_version_and_the_controls(
    try_it: TryIt, demo_bot: Bot
) -> None:
    response = try_it.client.get(f"/admin/bots/bot/{demo_bot.pk}/studio/try/")

    assert response.status_code == 200
    html = response.content.decode()
    for element in (
        'id="try-version"',
        'id="try-locale"',
        'id="try-log"',
        'id="try-input"',
        'id="try-send"',
        'id="try-reset"',
        'id="try-save"',
        "studio/try.js",
    ):
        assert element in html
    assert '<option value="draft">draft</option>' in html
    assert '<option value="live" selected>live (version 1)</option>' in html
    assert '<option value="1">version 1</option>' in html


def test_the_menu_answers_in_the_locale_chosen(try_it: TryIt) -> None:
    english = try_it.say("/start")
    try_it.locale = "uk"
    ukrainian = try_it.say("/start")

    assert _texts(english) == [("message", MENU_EN)]
    assert _labels(english["replies"][0]) == MENU_EN_BUTTONS
    assert [b["row"] for b in english["replies"][0]["buttons"]] == [0, 1, 1]
    assert _texts(ukrainian) == [("message", "Вітаємо в Café Bot, Tester! Що бажаєте?")]
    assert _labels(ukrainian["replies"][0]) == [
        "☕ Замовити напій",
        "🧾 Мої замовлення",
        "❓ Допомога",
    ]


def test_a_wizard_runs_through_buttons_text_and_a_shared_contact(
    try_it: TryIt, telegram_api: FakeTelegramControl
) -> None:
    menu = try_it.say("/start")["replies"][0]

    drink = try_it.press(menu, "☕ Order a drink")
    size = try_it.press(drink["replies"][0], "Latte")
    quantity = try_it.press(size["replies"][0], "Medium")
    name = try_it.say("2")
    phone = try_it.say("Ann")
    done = try_it.press(phone["replies"][0], "📱 Share my phone number")

    assert drink["press"] == "☕ Order a drink"
    assert _texts(drink) == [("message", "Which drink would you like?")]
    assert _labels(drink["replies"][0]) == DRINKS_EN
    assert _texts(size) == [("message", "Which size?")]
    assert _labels(size["replies"][0]) == [
        "Small",
        "Medium",
        "Large",
        "« Back",
        "✖ Cancel",
    ]
    assert _texts(quantity) == [
        ("message", "How many cups? Send a number from 1 to 10.")
    ]
    assert _texts(name) == [
        ("message", "What name should we call out when it's ready?")
    ]
    assert _texts(phone) == [
        (
            "message",
            "Share your phone number so we can call you when your order is "
            "ready, or skip.",
        )
    ]
    assert [(b["label"], b["kind"]) for b in phone["replies"][0]["buttons"]] == [
        ("📱 Share my phone number", "contact"),
        ("« Back", "text"),
        ("Skip »", "text"),
        ("✖ Cancel", "text"),
    ]
    assert done["contact"] == "+380500000001"
    assert _texts(done) == [
        (
            "message",
            "Thank you, Ann! Your order: Latte, Medium — 2 cups.\n"
            "We will call you at +380500000001 when it is ready.",
        ),
        ("message", MENU_EN),
    ]
    assert telegram_api.calls() == []


def test_a_wizard_in_ukrainian(try_it: TryIt) -> None:
    try_it.locale = "uk"

    drink = try_it.say("/order")
    cancelled = try_it.press(drink["replies"][0], "✖ Скасувати")

    assert _texts(drink) == [("message", "Який напій бажаєте?")]
    assert _labels(drink["replies"][0]) == [
        "Лате",
        "Капучино",
        "Американо",
        "Чай",
        "✖ Скасувати",
    ]
    assert _texts(cancelled) == [
        ("message", "Скасовано."),
        ("message", "Вітаємо в Café Bot, Tester! Що бажаєте?"),
    ]


def test_the_draft_runs_without_being_published_and_an_edit_replaces_the_message(
    try_it: TryIt, demo_bot: Bot, staff: Any
) -> None:
    demo_bot.draft_spec = _help_menu_draft(demo_bot)
    demo_bot.save(update_fields=["draft_spec"])
    live_before = (demo_bot.live_version_id, SpecVersion.objects.count())
    try_it.version = "draft"

    menu = try_it.say("/start")["replies"][0]
    help_menu = try_it.press(menu, "❓ Help")

    reply = help_menu["replies"][0]
    assert reply["kind"] == "edit"
    assert reply["message_id"] == menu["message_id"]
    assert reply["text"].startswith("I take drink orders for the café.")
    assert _labels(reply) == ["☕ Order a drink"]
    demo_bot.refresh_from_db()
    assert (demo_bot.live_version_id, SpecVersion.objects.count()) == live_before
    conversation = Conversation.objects.get(bot=demo_bot)
    assert conversation.spec_version_id is None
    assert conversation.chat_id == local_chat_id(staff_id=staff.pk, number=0)


def test_the_live_version_answers_as_before_beside_the_draft(
    try_it: TryIt, demo_bot: Bot
) -> None:
    demo_bot.draft_spec = _help_menu_draft(demo_bot)
    demo_bot.save(update_fields=["draft_spec"])

    live_help = try_it.say("/help")
    try_it.version = "draft"
    draft_help = try_it.say("/help")

    assert _texts(live_help)[0][1].startswith("I take drink orders")
    assert live_help["replies"][0]["buttons"] == []
    assert _labels(draft_help["replies"][0]) == ["☕ Order a drink"]
    assert Conversation.objects.filter(bot=demo_bot).count() == 2


def test_an_invalid_draft_is_refused_with_its_errors_and_nothing_written(
    try_it: TryIt, demo_bot: Bot
) -> None:
    draft = copy.deepcopy(demo_bot.live_version.source)  # type: ignore[union-attr]
    draft["nodes"]["main"]["rows"][0][0]["goto"] = "nowhere"
    draft["nodes"]["order"]["steps"][2]["max"] = 0
    demo_bot.draft_spec = draft
    demo_bot.save(update_fields=["draft_spec"])
    try_it.version = "draft"
    before = _runtime_rows(demo_bot)

    response = try_it.post("send", locale="en", text="/start")
    log = try_it.log()

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "spec_invalid"
    assert body["fields"] == {
        "nodes.order.steps[2].max": ["max must not be less than the minimum"]
    }
    assert log.status_code == 400
    assert log.json()["code"] == "spec_invalid"
    assert _runtime_rows(demo_bot) == before


def test_a_draft_with_lint_errors_is_refused_too(try_it: TryIt, demo_bot: Bot) -> None:
    draft = copy.deepcopy(demo_bot.live_version.source)  # type: ignore[union-attr]
    draft["nodes"]["main"]["rows"][0][0]["goto"] = "nowhere"
    demo_bot.draft_spec = draft
    demo_bot.save(update_fields=["draft_spec"])
    try_it.version = "draft"
    before = _runtime_rows(demo_bot)

    response = try_it.post("send", locale="en", text="/start")

    assert response.status_code == 400
    assert response.json()["code"] == "spec_invalid"
    assert response.json()["fields"] == {
        "nodes.main.rows[0][0].goto": ["There is no node 'nowhere'."]
    }
    assert _runtime_rows(demo_bot) == before


def test_reset_starts_the_conversation_over(try_it: TryIt, demo_bot: Bot) -> None:
    menu = try_it.say("/start")["replies"][0]
    try_it.press(menu, "☕ Order a drink")

    response = try_it.post("reset")
    again = try_it.say("Latte")

    assert response.status_code == 200
    assert response.json() == {"entries": []}
    # Before any node, anything starts the conversation.
    assert _texts(again) == [("message", MENU_EN)]
    assert again["replies"][0]["message_id"] == 1
    assert try_it.log().json()["entries"] == [again]


def test_reset_erases_the_test_users_rows_in_the_bots_tables(try_it: TryIt) -> None:
    drink = try_it.say("/order")["replies"][0]
    size = try_it.press(drink, "Tea")["replies"][0]
    try_it.press(size, "Small")
    try_it.say("1")
    phone = try_it.say("Bo")["replies"][0]
    try_it.press(phone, "Skip »")
    listed = try_it.say("/orders")

    try_it.post("reset")
    after = try_it.say("/orders")

    assert _texts(listed)[0][1].startswith("Your last orders:\n#")
    assert _texts(after) == [("message", "You have no orders yet.")]


def test_the_log_keeps_the_conversation_for_the_page(try_it: TryIt) -> None:
    first = try_it.say("/start")
    second = try_it.say("/help")

    response = try_it.log()

    assert response.status_code == 200
    assert response.json() == {
        "locales": ["en", "uk"],
        "default_locale": "en",
        "entries": [first, second],
    }


def test_save_as_test_creates_one_draft_transcript_with_the_steps(
    try_it: TryIt, demo_bot: Bot, staff: Any
) -> None:
    menu = try_it.say("/start")["replies"][0]
    drink = try_it.press(menu, "☕ Order a drink")["replies"][0]
    try_it.press(drink, "✖ Cancel")
    try_it.press(drink, "✖ Cancel")
    try_it.press(menu, "❓ Help")

    response = try_it.post("save", locale="en", name="Order then cancel")

    assert response.status_code == 201
    transcript = Transcript.objects.get(bot=demo_bot, is_draft=True)
    assert response.json() == {
        "transcript": {"id": transcript.pk, "name": "Order then cancel", "steps": 5}
    }
    assert (transcript.is_draft, transcript.locale, transcript.created_by) == (
        True,
        "en",
        staff,
    )
    assert transcript.steps == [
        {"say": "/start", "expect": [MENU_EN], "buttons": MENU_EN_BUTTONS},
        {
            "press": "☕ Order a drink",
            "expect": ["Which drink would you like?"],
            "buttons": DRINKS_EN,
        },
        {
            "press": "✖ Cancel",
            "expect": ["Cancelled.", MENU_EN],
            "buttons": MENU_EN_BUTTONS,
        },
        {
            "press": "✖ Cancel",
            "expect": ["This button is no longer active."],
            "buttons": MENU_EN_BUTTONS,
        },
        {"press": "❓ Help", "expect": [HELP_EN], "buttons": []},
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"name": ""}, "name_invalid"),
        ({"name": "x" * 101}, "name_invalid"),
        ({"name": 5}, "field_invalid"),
        ({"name": "ok", "locale": "de"}, "unknown_locale"),
    ],
)
def test_save_refuses_a_bad_name_or_locale_and_saves_nothing(
    try_it: TryIt, data: dict[str, Any], code: str
) -> None:
    try_it.say("/start")
    before = list(Transcript.objects.values_list("name", "updated_at"))

    response = try_it.post("save", **{"locale": "en", **data})

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert list(Transcript.objects.values_list("name", "updated_at")) == before


def test_save_refuses_a_taken_name_and_an_empty_conversation(
    try_it: TryIt, demo_bot: Bot
) -> None:
    empty = try_it.post("save", locale="en", name="First")
    try_it.say("/start")
    first = try_it.post("save", locale="en", name="First")
    taken = try_it.post("save", locale="en", name="First")

    assert (empty.status_code, empty.json()["code"]) == (400, "nothing_to_save")
    assert first.status_code == 201
    assert (taken.status_code, taken.json()["code"]) == (400, "name_taken")
    drafts = Transcript.objects.filter(is_draft=True)
    assert list(drafts.values_list("name", flat=True)) == ["First"]


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("send", {"locale": "en"}, "field_invalid"),
        ("send", {"locale": "en", "text": "   "}, "text_invalid"),
        ("send", {"locale": "en", "text": "x" * 4097}, "text_invalid"),
        ("send", {"locale": "de", "text": "/start"}, "unknown_locale"),
        ("send", {"locale": "en", "text": "/start", "version": "7"}, "unknown_version"),
        ("send", {"locale": "en", "text": "/start", "version": 1}, "field_invalid"),
        (
            "send",
            {"locale": "en", "text": "/start", "version": "9" * 30},
            "unknown_version",
        ),
        ("press", {"locale": "en", "message_id": 1, "index": 0}, "unknown_button"),
        ("press", {"locale": "en", "message_id": True, "index": 0}, "field_invalid"),
        ("press", {"locale": "en", "message_id": 1, "index": "0"}, "field_invalid"),
        ("reset", {"version": "nope"}, "unknown_version"),
    ],
)
def test_bad_input_is_a_json_error_and_changes_nothing(
    try_it: TryIt, demo_bot: Bot, name: str, body: dict[str, Any], code: str
) -> None:
    before = _runtime_rows(demo_bot)

    response = try_it.post(name, **body)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert _runtime_rows(demo_bot) == before


def test_a_body_that_is_not_a_json_object_is_refused(
    try_it: TryIt, demo_bot: Bot
) -> None:
    url = f"/admin/bots/bot/{demo_bot.pk}/studio/try/send/"

    for body in ("{", "[1]", "\xff"):
        response = try_it.client.post(url, data=body, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["code"] == "json_invalid"
    assert try_it.client.get(url).status_code == 405


def test_real_users_conversations_are_not_touched(
    try_it: TryIt, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    webhook = Webhook(Client(), demo_bot)
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 1, "type": "private"},
            "from": {"id": 1, "is_bot": False, "first_name": "Real"},
            "text": "/order",
        },
    }
    assert webhook.post(update).status_code == 200
    real = Conversation.objects.get(bot=demo_bot, chat_id=1)

    try_it.say("/start")
    try_it.post("reset")

    again = Conversation.objects.get(bot=demo_bot, chat_id=1)
    assert (again.state, again.updated_at) == (real.state, real.updated_at)
    assert OutboundMessage.objects.filter(bot=demo_bot, chat_id=1).count() == 1
    # Only the real user's answer went to Telegram.
    assert [call["method"] for call in telegram_api.calls()] == ["sendMessage"]


def test_staff_without_edit_access_get_403(demo_bot: Bot) -> None:
    viewer = _user("viewer", superuser=False)
    BotAccess.objects.create(bot=demo_bot, user=viewer, level=BotAccess.Level.VIEW)
    stranger = _user("stranger", superuser=False)
    before = _runtime_rows(demo_bot)

    for user in (viewer, stranger):
        client = Client()
        client.force_login(user)
        page = client.get(f"/admin/bots/bot/{demo_bot.pk}/studio/try/")
        send = TryIt(client, demo_bot).post("send", locale="en", text="/start")
        log = TryIt(client, demo_bot).log()
        assert page.status_code == 403
        assert (send.status_code, send.json()["code"]) == (403, "permission_denied")
        assert log.status_code == 403
    assert _runtime_rows(demo_bot) == before


def test_staff_with_edit_access_may_try_it(demo_bot: Bot) -> None:
    editor = _user("editor", superuser=False)
    BotAccess.objects.create(bot=demo_bot, user=editor, level=BotAccess.Level.EDIT)
    client = Client()
    client.force_login(editor)

    entry = TryIt(client, demo_bot).say("/start")

    assert _texts(entry) == [("message", MENU_EN)]


def test_a_saved_test_passes_when_the_conversation_tests_run_it(
    try_it: TryIt, demo_bot: Bot
) -> None:
    menu = try_it.say("/start")["replies"][0]
    drink = try_it.press(menu, "☕ Order a drink")["replies"][0]
    size = try_it.press(drink, "Tea")["replies"][0]
    try_it.press(size, "Large")
    try_it.say("1")
    phone = try_it.say("Bo")["replies"][0]
    try_it.press(phone, "📱 Share my phone number")
    try_it.say("/help")
    try_it.say("/order")
    try_it.say("/cancel")
    assert try_it.post("save", locale="en", name="Tea").status_code == 201

    transcript = Transcript.objects.get(name="Tea")
    assert demo_bot.live_version is not None
    result = transcript_run(
        bot=demo_bot, version=demo_bot.live_version, transcript=transcript
    )

    assert (len(transcript.steps), result.passed, result.difference) == (10, True, "")


def test_a_language_model_answer_comes_back_to_the_draft(
    try_it: TryIt, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    def draft(source: dict[str, Any]) -> dict[str, Any]:
        # Live, the answer returns to the start node silently; here it goes on.
        source["nodes"]["ask_answer"]["next"] = "help"
        return source

    demo_bot.draft_spec = draft(_help_menu_draft(demo_bot))
    demo_bot.save(update_fields=["draft_spec"])
    try_it.version = "draft"

    try_it.say("/ask")
    answered = try_it.say("Is tea hot?")
    saved = try_it.post("save", locale="en", name="Ask")

    assert [
        (reply["kind"], reply["text"], reply["message_id"], reply["later"])
        for reply in answered["replies"]
    ] == [
        ("message", "Let me think…", 2, False),
        ("edit", "Echo: Is tea hot?", 2, True),
        ("message", HELP_EN, 3, True),
    ]
    assert saved.status_code == 201
    # A test run does not wait for the model: only the update's own replies.
    assert Transcript.objects.get(name="Ask").steps[1] == {
        "say": "Is tea hot?",
        "expect": ["Let me think…"],
        "buttons": [],
    }
    assert telegram_api.calls() == []


@pytest.mark.django_db
def test_a_draft_runs_before_anything_is_published(staff: Any) -> None:
    bot = BotFactory.create(
        draft_spec={
            "start": "main",
            "default_locale": "en",
            "locales": ["en"],
            "nodes": {
                "main": {
                    "type": "menu.v1",
                    "text": "main.text",
                    "rows": [[{"label": "main.again", "goto": "main"}]],
                }
            },
        }
    )
    client = Client()
    client.force_login(staff)
    try_it = TryIt(client, bot, "draft")

    entry = try_it.say("hello")
    live = try_it.post("send", locale="en", text="hello", version="live")

    # Without translations the keys are shown.
    assert _texts(entry) == [("message", "main.text")]
    assert _labels(entry["replies"][0]) == ["main.again"]
    assert (live.status_code, live.json()["code"]) == (400, "no_live_version")
    bot.refresh_from_db()
    assert bot.live_version_id is None
    assert SpecVersion.objects.filter(bot=bot).count() == 0
