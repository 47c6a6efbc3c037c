from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot

Shot = Callable[[Page, str], Path]
ReadmeShot = Callable[..., Path | None]

MAIN_EN = (
    "Welcome to the Café Bot, Tester! What would you like?",
    ["☕ Order a drink", "🧾 My orders", "❓ Help"],
)
MAIN_UK = (
    "Вітаємо в Café Bot, Tester! Що бажаєте?",
    ["☕ Замовити напій", "🧾 Мої замовлення", "❓ Допомога"],
)


def _open(page: Page, base_url: str, bot: Bot, locale: str) -> None:
    page.goto(f"{base_url}/admin/bots/bot/{bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Try it").click()
    expect(page).to_have_url(f"{base_url}/admin/bots/bot/{bot.pk}/studio/try/")
    expect(page.locator("#try-locale option")).to_have_text(["en", "uk"])
    page.select_option("#try-locale", locale)


def _bubbles(page: Page) -> int:
    return page.locator("#try-log .try-bubble").count()


def _say(page: Page, text: str) -> None:
    before = _bubbles(page)
    page.fill("#try-input", text)
    page.click("#try-send")
    expect(page.locator("#try-log .try-bubble")).not_to_have_count(before)


def _press(page: Page, label: str) -> None:
    before = _bubbles(page)
    last = page.locator("#try-log .try-bot").last
    last.locator(".try-button").filter(has_text=label).click()
    expect(page.locator("#try-log .try-bubble")).not_to_have_count(before)


def _replies(page: Page, count: int) -> list[tuple[str, list[str]]]:
    """The texts and button labels of the bot's last ``count`` messages."""
    messages = page.locator("#try-log .try-bot").all()[-count:]

    return [
        (
            message.locator(".try-text").inner_text(),
            message.locator(".try-button").all_inner_texts(),
        )
        for message in messages
    ]


def test_menu_and_order_wizard_in_english(
    staff_page: Page,
    base_url: str,
    demo_bot: Bot,
    shot: Shot,
    readme_shot: ReadmeShot,
) -> None:
    page = staff_page
    _open(page, base_url, demo_bot, "en")
    expect(page.locator("#try-version")).to_have_value("live")

    _say(page, "/start")
    assert _replies(page, 1) == [MAIN_EN]

    _press(page, "❓ Help")
    assert _replies(page, 1) == [
        (
            "I take drink orders for the café.\n\n"
            "Press Order a drink and answer a few questions, or see My orders.\n"
            "Commands: /order, /orders, /help, and /cancel to stop an order.",
            [],
        )
    ]
    shot(page, "menu-help")

    _say(page, "/start")
    _press(page, "☕ Order a drink")
    assert _replies(page, 1) == [
        (
            "Which drink would you like?",
            ["Latte", "Cappuccino", "Americano", "Tea", "✖ Cancel"],
        )
    ]
    _press(page, "Cappuccino")
    assert _replies(page, 1) == [
        ("Which size?", ["Small", "Medium", "Large", "« Back", "✖ Cancel"])
    ]
    _press(page, "Medium")
    _say(page, "11")
    assert _replies(page, 1) == [
        (
            "Please send a whole number from 1 to 10.\n\n"
            "How many cups? Send a number from 1 to 10.",
            ["« Back", "✖ Cancel"],
        )
    ]
    _say(page, "1")
    _say(page, "Olena")
    assert _replies(page, 1)[0][1] == [
        "📱 Share my phone number",
        "« Back",
        "Skip »",
        "✖ Cancel",
    ]
    _press(page, "Skip »")

    assert _replies(page, 2) == [
        ("Thank you, Olena! Your order: Cappuccino, Medium — 1 cup.", []),
        MAIN_EN,
    ]
    shot(page, "order-done")
    readme_shot(page, "try-it", ready="#try-log .try-bot")


def test_menu_and_order_wizard_in_ukrainian(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    _open(page, base_url, demo_bot, "uk")

    _say(page, "/start")
    assert _replies(page, 1) == [MAIN_UK]

    _press(page, "☕ Замовити напій")
    assert _replies(page, 1) == [
        ("Який напій бажаєте?", ["Лате", "Капучино", "Американо", "Чай", "✖ Скасувати"])
    ]
    _press(page, "Лате")
    _press(page, "Велика")
    _say(page, "2")
    _say(page, "Олена")
    assert _replies(page, 1) == [
        (
            "Поділіться номером телефону, щоб ми зателефонували, коли замовлення "
            "буде готове, або пропустіть цей крок.",
            [
                "📱 Поділитися номером телефону",
                "« Назад",
                "Пропустити »",
                "✖ Скасувати",
            ],
        )
    ]
    _press(page, "📱 Поділитися номером телефону")

    assert _replies(page, 2) == [
        (
            "Дякуємо, Олена! Ваше замовлення: Лате, Велика — 2 чашки.\n"
            "Ми зателефонуємо на номер +380500000001, коли замовлення буде готове.",
            [],
        ),
        MAIN_UK,
    ]
    shot(page, "order-done")

    page.click("#try-reset")

    expect(page.locator("#try-log .try-bubble")).to_have_count(0)
    page.reload()
    expect(page.locator("#try-locale option")).to_have_count(2)
    expect(page.locator("#try-log .try-bubble")).to_have_count(0)
