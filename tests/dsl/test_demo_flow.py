"""The demo café bot, driven through the executor like the runtime does."""

# The bot speaks Ukrainian and its buttons use typographic quotes and arrows,
# which the ambiguous-character check would flag.

import json
from pathlib import Path

import pytest
from babel import Locale

from dsl import (
    AnswerCallback,
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    ConversationState,
    ExecutionContext,
    RunSql,
    SendMessage,
    SqlResultEvent,
    TextEvent,
    execute,
    spec_lint,
    spec_validate,
)

DEMO = Path(__file__).resolve().parents[2] / "bots" / "demo"
SPEC = spec_validate(json.loads((DEMO / "spec.json").read_text(encoding="utf-8")))
TRANSLATIONS = json.loads((DEMO / "translations.json").read_text(encoding="utf-8"))
USER_ID = 501


class DemoTranslator:
    """The demo's translations for one locale, plural forms by CLDR rules."""

    def __init__(self, locale):
        self.locale = locale

    def pattern(self, key, count=None):
        value = TRANSLATIONS[self.locale].get(key)
        if not isinstance(value, dict):
            return value
        category = (
            "other" if count is None else Locale.parse(self.locale).plural_form(count)
        )
        return value.get(category, value["other"])


class Chat:
    """A private chat with the demo bot; runs SQL actions as the runtime."""

    def __init__(self, locale, rows=None):
        self.ctx = ExecutionContext(
            translator=DemoTranslator(locale),
            locale=locale,
            chat_type="private",
            user_id=USER_ID,
            chat_id=USER_ID,
            user_first_name="Olena",
            bot_username="demo_cafe_bot",
        )
        self.state = ConversationState.initial()
        self.rows = rows or []
        self.sql = []

    def send(self, event):
        actions = []
        while True:
            result = execute(SPEC, self.state, event, self.ctx)
            self.state = result.state
            actions += [a for a in result.actions if not isinstance(a, RunSql)]
            pending = [a for a in result.actions if isinstance(a, RunSql)]
            if not pending:
                return actions
            self.sql.append(pending[0])
            rows = self.rows if pending[0].mode == "read" else []
            event = SqlResultEvent(node_id=pending[0].node_id, rows=rows)

    def press(self, message, label, message_id=100):
        for row in message.reply_markup["inline_keyboard"]:
            for button in row:
                if button["text"] == label:
                    data = button["callback_data"]
                    event = CallbackEvent(
                        callback_id="q", data=data, message_id=message_id
                    )
                    return self.send(event)
        raise AssertionError(f"No button {label!r}.")


def _inline(*rows):
    return {
        "inline_keyboard": [
            [{"text": t, "callback_data": d} for t, d in row] for row in rows
        ]
    }


def _message(text, markup=None):
    return SendMessage(text=text, parse_mode="HTML", reply_markup=markup)


EN = {
    "main": "Welcome to the Café Bot, Olena! What would you like?",
    "order": "☕ Order a drink",
    "orders": "🧾 My orders",
    "help": "❓ Help",
    "drink": "Which drink would you like?",
    "drinks": ["Latte", "Cappuccino", "Americano", "Tea"],
    "size": "Which size?",
    "sizes": ["Small", "Medium", "Large"],
    "quantity": "How many cups? Send a number from 1 to 10.",
    "quantity_invalid": "Please send a whole number from 1 to 10.",
    "name": "What name should we call out when it's ready?",
    "phone": "Share your phone number so we can call you when your order is ready, "
    "or skip.",
    "share": "📱 Share my phone number",
    "back": "« Back",
    "skip": "Skip »",
    "cancel": "✖ Cancel",
    "done": "<b>Thank you, Olena &amp; Co!</b> Your order: Latte, Large — 2 cups.\n"
    "We will call you at +380501112233 when it is ready.",
}
UK = {
    "main": "Вітаємо в Café Bot, Olena! Що бажаєте?",
    "order": "☕ Замовити напій",
    "orders": "🧾 Мої замовлення",
    "help": "❓ Допомога",
    "drink": "Який напій бажаєте?",
    "drinks": ["Лате", "Капучино", "Американо", "Чай"],
    "size": "Який розмір?",
    "sizes": ["Мала", "Середня", "Велика"],
    "quantity": "Скільки чашок? Надішліть число від 1 до 10.",
    "quantity_invalid": "Будь ласка, надішліть ціле число від 1 до 10.",
    "name": "Яке ім'я назвати, коли замовлення буде готове?",
    "phone": "Поділіться номером телефону, щоб ми зателефонували, коли замовлення "
    "буде готове, або пропустіть цей крок.",
    "share": "📱 Поділитися номером телефону",
    "back": "« Назад",
    "skip": "Пропустити »",
    "cancel": "✖ Скасувати",
    "done": "<b>Дякуємо, Olena &amp; Co!</b> Ваше замовлення: Лате, Велика — 2 чашки.\n"
    "Ми зателефонуємо на номер +380501112233, коли замовлення буде готове.",
}


@pytest.mark.parametrize(("locale", "say"), [("en", EN), ("uk", UK)])
def test_a_full_order(locale, say):
    chat = Chat(locale)

    def menu_at(generation):
        return _message(
            say["main"],
            _inline(
                [(say["order"], f"{generation}:main:0:b9ae0fa93")],
                [
                    (say["orders"], f"{generation}:main:0:b56e474a8"),
                    (say["help"], f"{generation}:main:0:b9eb2ded2"),
                ],
            ),
        )

    # /start shows the main menu
    start = chat.send(CommandEvent(command="start"))
    assert start == [menu_at(1)]

    # Order a drink opens the wizard: the drink, two to a row
    drink = chat.press(start[0], say["order"])
    d = say["drinks"]
    assert drink == [
        AnswerCallback(callback_id="q"),
        _message(
            say["drink"],
            _inline(
                [(d[0], "2:order:0:olatte"), (d[1], "2:order:0:ocappuccino")],
                [(d[2], "2:order:0:oamericano"), (d[3], "2:order:0:otea")],
                [(say["cancel"], "2:order:0:x")],
            ),
        ),
    ]

    # the size, three to a row, now with Back
    size = chat.press(drink[1], d[0])
    s = say["sizes"]
    assert size[1] == _message(
        say["size"],
        _inline(
            [
                (s[0], "2:order:1:osmall"),
                (s[1], "2:order:1:omedium"),
                (s[2], "2:order:1:olarge"),
            ],
            [(say["back"], "2:order:1:k"), (say["cancel"], "2:order:1:x")],
        ),
    )

    # the quantity, refused out of range, then accepted
    controls = [(say["back"], "2:order:2:k"), (say["cancel"], "2:order:2:x")]
    quantity = chat.press(size[1], s[2])
    assert quantity[1] == _message(say["quantity"], _inline(controls))
    assert chat.send(TextEvent(text="11")) == [
        _message(f"{say['quantity_invalid']}\n\n{say['quantity']}", _inline(controls))
    ]
    name = chat.send(TextEvent(text="2"))
    assert name == [
        _message(
            say["name"],
            _inline([(say["back"], "2:order:3:k"), (say["cancel"], "2:order:3:x")]),
        )
    ]

    # the phone, through the contact keyboard
    phone = chat.send(TextEvent(text="Olena & Co"))
    assert phone == [
        _message(
            say["phone"],
            {
                "keyboard": [
                    [{"text": say["share"], "request_contact": True}],
                    [
                        {"text": say["back"]},
                        {"text": say["skip"]},
                        {"text": say["cancel"]},
                    ],
                ],
                "resize_keyboard": True,
                "one_time_keyboard": True,
            },
        )
    ]

    # sharing the user's own contact saves the order and thanks them
    done = chat.send(
        ContactEvent(phone_number="+380501112233", contact_user_id=USER_ID)
    )
    assert chat.sql == [
        RunSql(
            node_id="save_order",
            statement="INSERT INTO orders (user_id, chat_id, drink, size, quantity, "
            "name, phone) VALUES (:user_id, :chat_id, :drink, :size, :quantity, "
            ":name, :phone)",
            params={
                "user_id": USER_ID,
                "chat_id": USER_ID,
                "drink": "latte",
                "size": "large",
                "quantity": 2,
                "name": "Olena & Co",
                "phone": "+380501112233",
            },
            mode="write",
            timeout_ms=2000,
            max_rows=100,
        )
    ]
    assert done == [
        _message(say["done"], {"remove_keyboard": True}),
        menu_at(5),
    ]
    assert chat.state.is_at_start(SPEC)


def test_skipping_the_phone_and_one_cup_in_ukrainian():
    chat = Chat("uk")
    chat.send(CommandEvent(command="order"))
    chat.send(TextEvent(text="чай"))
    chat.send(TextEvent(text="мала"))
    chat.send(TextEvent(text="1"))
    chat.send(TextEvent(text="Тарас"))

    done = chat.send(TextEvent(text="Пропустити »"))

    assert chat.sql[0].params["phone"] is None
    assert done[0] == _message(
        "<b>Дякуємо, Тарас!</b> Ваше замовлення: Чай, Мала — 1 чашка.",
        {"remove_keyboard": True},
    )


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "en",
            "<b>Your last orders:</b>\n#4 Tea, Small — 1 cup\n#3 Latte, Large — 2 cups",
        ),
        (
            "uk",
            "<b>Ваші останні замовлення:</b>\n#4 Чай, Мала — 1 чашка\n"
            "#3 Лате, Велика — 2 чашки\n#2 Капучино, Середня — 5 чашок\n"
            "#1 Американо, Мала — 21 чашка",
        ),
    ],
)
def test_my_orders_lists_the_last_orders_with_plurals(locale, expected):
    rows = [
        {"id": 4, "drink": "tea", "size": "small", "quantity": 1},
        {"id": 3, "drink": "latte", "size": "large", "quantity": 2},
    ]
    if locale == "uk":
        rows += [
            {"id": 2, "drink": "cappuccino", "size": "medium", "quantity": 5},
            {"id": 1, "drink": "americano", "size": "small", "quantity": 21},
        ]
    chat = Chat(locale, rows=rows)

    listed = chat.send(CommandEvent(command="orders"))

    assert chat.sql[0].statement == (
        "SELECT id, drink, size, quantity FROM orders WHERE user_id = :user_id "
        "ORDER BY id DESC LIMIT 5"
    )
    assert chat.sql[0].params == {"user_id": USER_ID}
    assert listed == [_message(expected)]
    assert chat.state.node == "main"


def test_my_orders_without_orders_and_help():
    chat = Chat("en")
    menu = chat.send(CommandEvent(command="start"))[0]

    empty = chat.press(menu, "🧾 My orders")
    helped = chat.press(menu, "❓ Help")

    assert empty == [
        AnswerCallback(callback_id="q"),
        _message("You have no orders yet."),
    ]
    assert helped == [
        AnswerCallback(callback_id="q"),
        _message(
            "I take drink orders for the café.\n\nPress <b>Order a drink</b> and "
            "answer a few questions, or see <b>My orders</b>.\nCommands: /order, "
            "/orders, /help, and /cancel to stop an order."
        ),
    ]


def test_cancel_in_the_middle_of_an_order_returns_to_the_menu():
    chat = Chat("uk")
    chat.send(CommandEvent(command="start", payload="order"))

    cancelled = chat.send(CommandEvent(command="cancel"))

    assert [a.text for a in cancelled] == ["Скасовано.", UK["main"]]
    assert chat.sql == []


def test_the_demo_spec_lints_clean_with_its_translations():
    keys = {locale: set(table) for locale, table in TRANSLATIONS.items()}

    assert spec_lint(SPEC, translation_keys=keys) == []


def test_the_demo_translations_are_complete_in_both_locales():
    english, ukrainian = TRANSLATIONS["en"], TRANSLATIONS["uk"]

    assert sorted(english) == sorted(ukrainian)
    plurals = {
        key: sorted(value)
        for key, value in ukrainian.items()
        if isinstance(value, dict)
    }
    assert plurals == {
        "order.done": ["few", "many", "one", "other"],
        "orders.item": ["few", "many", "one", "other"],
    }
