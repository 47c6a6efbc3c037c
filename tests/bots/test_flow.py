"""The demo bot end to end: webhook, executor, SQL, outbox, real client, fake API."""

from typing import Any

import pytest

from bots.models import Bot, Conversation, OutboundMessage
from bots.sql import sql_run
from tests.bots.chat_user import ChatUser, labels, texts
from tests.fakes.control import FakeTelegramControl


def _orders(bot: Bot) -> list[dict[str, Any]]:
    outcome = sql_run(
        bot=bot,
        node_id="check",
        statement=(
            "SELECT user_id, drink, size, quantity, name, phone FROM orders ORDER BY id"
        ),
        params={},
        mode="read",
        timeout_ms=2000,
        max_rows=100,
        update_id=0,
    )
    assert outcome.error is None

    return outcome.rows


def test_an_order_in_english_end_to_end(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(
        bot=demo_bot, telegram=telegram_api, user_id=5550001, first_name="Ann"
    )

    start = ann.say("/start")
    assert texts(start) == [
        ("sendMessage", "Welcome to the Café Bot, Ann! What would you like?")
    ]
    assert labels(start[0]) == [["☕ Order a drink"], ["🧾 My orders", "❓ Help"]]

    drink = ann.press("☕ Order a drink")
    assert texts(drink) == [
        ("answerCallbackQuery", ""),
        ("sendMessage", "Which drink would you like?"),
    ]
    assert labels(drink[1]) == [
        ["Latte", "Cappuccino"],
        ["Americano", "Tea"],
        ["✖ Cancel"],
    ]

    size = ann.press("Cappuccino")
    assert texts(size)[-1] == ("sendMessage", "Which size?")
    quantity = ann.press("Large")
    assert texts(quantity)[-1] == (
        "sendMessage",
        "How many cups? Send a number from 1 to 10.",
    )

    wrong = ann.say("eleven")
    assert texts(wrong) == [
        (
            "sendMessage",
            "Please send a whole number from 1 to 10.\n\n"
            "How many cups? Send a number from 1 to 10.",
        )
    ]
    too_many = ann.say("11")
    assert texts(too_many)[0][1].startswith("Please send a whole number from 1 to 10.")

    name = ann.say("2")
    assert texts(name) == [
        ("sendMessage", "What name should we call out when it's ready?")
    ]
    phone = ann.say("Ann <b>&</b>")
    assert texts(phone)[0][1].startswith("Share your phone number")
    assert phone[0]["params"]["reply_markup"]["keyboard"][0] == [
        {"text": "📱 Share my phone number", "request_contact": True}
    ]

    done = ann.share_contact(phone="+15550001")
    assert texts(done) == [
        (
            "sendMessage",
            "<b>Thank you, Ann &lt;b&gt;&amp;&lt;/b&gt;!</b> Your order: Cappuccino, "
            "Large — 2 cups.\nWe will call you at +15550001 when it is ready.",
        ),
        ("sendMessage", "Welcome to the Café Bot, Ann! What would you like?"),
    ]
    assert done[0]["params"]["reply_markup"] == {"remove_keyboard": True}
    assert _orders(demo_bot) == [
        {
            "user_id": 5550001,
            "drink": "cappuccino",
            "size": "large",
            "quantity": 2,
            "name": "Ann <b>&</b>",
            "phone": "+15550001",
        }
    ]
    assert all(call["status"] == 200 for call in telegram_api.calls())

    listed = ann.say("/orders")
    assert texts(listed) == [
        ("sendMessage", "<b>Your last orders:</b>\n#1 Cappuccino, Large — 2 cups")
    ]


@pytest.mark.parametrize(
    ("quantity", "cups"), [("1", "1 чашка"), ("3", "3 чашки"), ("5", "5 чашок")]
)
def test_an_order_in_ukrainian_uses_the_right_plural(
    demo_bot: Bot, telegram_api: FakeTelegramControl, quantity: str, cups: str
) -> None:
    olena = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=111000111,
        first_name="Олена",
        language_code="uk",
    )
    olena.say("/start")
    olena.press("☕ Замовити напій")
    olena.press("Лате")
    olena.press("Мала")
    olena.say(quantity)
    olena.say("Олена")
    message_id, _buttons = olena.last_keyboard()
    assert message_id > 0

    done = olena.say("Пропустити »")

    assert texts(done)[0] == (
        "sendMessage",
        f"<b>Дякуємо, Олена!</b> Ваше замовлення: Лате, Мала — {cups}.",
    )
    assert [row["quantity"] for row in _orders(demo_bot)] == [int(quantity)]


def test_a_sticker_gets_a_polite_answer_and_the_step_waits(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5550002)
    ann.say("/start")
    ann.press("☕ Order a drink")
    before = Conversation.objects.get(chat_id=5550002).state

    reply = ann.send_sticker()

    assert len(texts(reply)) == 1
    assert reply[0]["method"] == "sendMessage"
    state = Conversation.objects.get(chat_id=5550002).state
    assert (state["node"], state["step"]) == (before["node"], before["step"])


def test_someone_elses_contact_is_refused(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5550003)
    ann.say("/start")
    ann.press("☕ Order a drink")
    ann.press("Tea")
    ann.press("Small")
    ann.say("1")
    ann.say("Ann")

    reply = ann.share_contact(phone="+15559999", owner_id=999)

    assert len(texts(reply)) == 1
    assert _orders(demo_bot) == []
    assert Conversation.objects.get(chat_id=5550003).state["node"] == "order"


def test_cancel_ends_the_wizard_and_returns_to_the_menu(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5550004)
    ann.say("/start")
    ann.press("☕ Order a drink")
    ann.press("Latte")

    reply = ann.say("/cancel")

    assert [method for method, _text in texts(reply)] == ["sendMessage", "sendMessage"]
    assert texts(reply)[-1] == (
        "sendMessage",
        "Welcome to the Café Bot, Ann! What would you like?",
    )
    assert Conversation.objects.get(chat_id=5550004).state["node"] == "main"
    assert _orders(demo_bot) == []


def test_a_button_of_an_older_message_is_answered_as_stale(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5550005)
    ann.say("/start")
    ann.press("☕ Order a drink")
    drink_message, drink_buttons = ann.last_keyboard()
    ann.press("Latte")
    state = Conversation.objects.get(chat_id=5550005).state

    reply = ann.callback(drink_buttons[1]["callback_data"], drink_message)

    assert [call["method"] for call in reply] == ["answerCallbackQuery"]
    assert reply[0]["params"]["text"] == "This button is no longer active."
    assert Conversation.objects.get(chat_id=5550005).state == state


def test_two_people_in_one_group_each_have_their_own_wizard(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    group = -1001234567890
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5550006,
        chat_id=group,
        chat_type="supergroup",
    )
    tom = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5550007,
        first_name="Tom",
        chat_id=group,
        chat_type="supergroup",
    )

    ann.say("/order@botfactory_demo_bot")
    tom.say("/start@botfactory_demo_bot")
    ignored = tom.say("/start@some_other_bot")

    keys = sorted(
        Conversation.objects.filter(bot=demo_bot).values_list(
            "chat_id", "thread_id", "user_id", "state__node"
        )
    )
    assert keys == [(group, 0, 5550006, "order"), (group, 0, 5550007, "main")]
    assert ignored == []


def test_forum_topics_are_separate_conversations_and_replies_go_to_the_topic(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    group = -1001234567891
    in_topic = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5550008,
        chat_id=group,
        chat_type="supergroup",
        thread_id=77,
    )
    general = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5550008,
        chat_id=group,
        chat_type="supergroup",
    )

    topic_reply = in_topic.say("/start")
    general.say("/order")

    assert topic_reply[0]["params"]["message_thread_id"] == "77"
    assert sorted(
        Conversation.objects.filter(bot=demo_bot).values_list(
            "thread_id", "state__node"
        )
    ) == [(0, "order"), (77, "main")]


def test_group_prompts_force_a_reply_to_the_user(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    group = -4001234567
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5550009,
        chat_id=group,
        chat_type="group",
    )
    ann.say("/order")
    ann.press("Latte")
    ann.press("Small")
    name = ann.say("2")

    params = name[0]["params"]
    assert params["reply_markup"]["force_reply"] is True
    assert params["reply_markup"]["selective"] is True
    assert params["reply_parameters"]["allow_sending_without_reply"] is True


def test_every_reply_of_a_processed_update_is_in_the_outbox_marked_sent(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5550010)

    calls = ann.say("/start")

    rows = list(
        OutboundMessage.objects.filter(chat_id=5550010).values_list("method", "status")
    )
    assert rows == [("sendMessage", "sent")]
    assert len(calls) == 1
