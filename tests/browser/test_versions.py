import copy
from collections.abc import Callable
from pathlib import Path

from django.contrib.auth import get_user_model
from playwright.sync_api import Page, expect

from bots.models import Bot, BotAccess, SpecVersion
from tests.browser.conftest import Staff, staff_login
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

Shot = Callable[[Page, str], Path]


def _draft_with_shorter_answers(bot: Bot) -> None:
    draft = copy.deepcopy(bot.draft_spec)
    draft["nodes"]["ask_answer"]["max_tokens"] = 200
    Bot.objects.filter(pk=bot.pk).update(draft_spec=draft)


def _open_versions(page: Page, base_url: str, bot: Bot) -> None:
    page.goto(f"{base_url}/admin/bots/bot/{bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Versions").click()
    expect(page).to_have_url(f"{base_url}/admin/bots/bot/{bot.pk}/studio/versions/")


def _csrf(page: Page) -> str:
    cookie = next(c for c in page.context.cookies() if c["name"] == "csrftoken")

    return cookie["value"]


def _rows(page: Page) -> list[tuple[str | None, bool]]:
    rows = page.locator("#versions-table tr.version-row").all()

    return [
        (row.get_attribute("data-number"), "live" in (row.get_attribute("class") or ""))
        for row in rows
    ]


def test_publish_the_draft_then_roll_back_to_the_first_version(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    first_source = demo_bot.live_version.source if demo_bot.live_version else None
    _draft_with_shorter_answers(demo_bot)
    _open_versions(page, base_url, demo_bot)
    expect(page.locator("#draft-row")).to_contain_text("Differs from the live version.")
    assert _rows(page) == [("1", True)]
    shot(page, "draft-differs")

    # A and B start at the live version and the draft.
    page.click("#compare-button")

    changed = page.locator("#spec-diff .diff-remove, #spec-diff .diff-add")
    expect(changed).to_have_text(
        ['-      "max_tokens": 500,', '+      "max_tokens": 200,']
    )
    expect(page.locator("#spec-diff .diff-file")).to_have_text(["--- v1", "+++ draft"])
    shot(page, "diff-live-and-draft")
    page.get_by_role("link", name="Back to the versions").click()

    page.fill("#id_message", "Shorter answers from the barista")
    page.click("#publish-button")

    expect(page.locator(".messagelist .success")).to_have_text(
        "Published as version 2."
    )
    assert _rows(page) == [("2", True), ("1", False)]
    expect(page.locator("tr.version-row.live")).to_contain_text(
        "Shorter answers from the barista"
    )
    expect(page.locator("#draft-row")).to_contain_text("Same as the live version.")
    demo_bot.refresh_from_db()
    assert demo_bot.live_version is not None
    live = demo_bot.live_version
    assert (live.number, live.source["nodes"]["ask_answer"]["max_tokens"]) == (2, 200)
    shot(page, "published")

    page.locator('tr.version-row[data-number="1"] .rollback-button').click()

    expect(page.locator(".messagelist .success")).to_have_text(
        "Rolled back: version 1 is live again as version 3."
    )
    assert _rows(page) == [("3", True), ("2", False), ("1", False)]
    expect(page.locator("#draft-row")).to_contain_text("Differs from the live version.")
    demo_bot.refresh_from_db()
    assert demo_bot.live_version is not None
    assert (demo_bot.live_version.number, demo_bot.live_version.source) == (
        3,
        first_source,
    )
    shot(page, "rolled-back")


def test_publishing_a_bot_with_a_token_sets_its_commands_per_locale(
    staff_page: Page,
    base_url: str,
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    shot: Shot,
) -> None:
    page = staff_page
    demo_bot.token = fake_bot_token(7000000003, "versions")
    demo_bot.save(update_fields=["token"])
    _draft_with_shorter_answers(demo_bot)
    _open_versions(page, base_url, demo_bot)

    page.click("#publish-button")

    expect(page.locator(".messagelist .success")).to_have_text(
        "Published as version 2."
    )
    calls = telegram_api.calls("setMyCommands", token=demo_bot.token)
    assert [call["params"].get("language_code") for call in calls] == [
        None,
        "en",
        "uk",
    ]
    # In the order of the spec's positions.
    assert calls[2]["params"]["commands"] == [
        {"command": "start", "description": "Головне меню"},
        {"command": "order", "description": "Замовити напій"},
        {"command": "orders", "description": "Мої останні замовлення"},
        {"command": "help", "description": "Як користуватися ботом"},
        {"command": "ask", "description": "Запитати баристу"},
        {"command": "cancel", "description": "Скасувати поточне замовлення"},
    ]
    shot(page, "published-with-commands")


def test_a_draft_that_fails_a_conversation_test_is_not_published(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    draft = copy.deepcopy(demo_bot.draft_spec)
    # The menu without its Help button: the saved conversations press it.
    draft["nodes"]["main"]["rows"][1] = [draft["nodes"]["main"]["rows"][1][0]]
    Bot.objects.filter(pk=demo_bot.pk).update(draft_spec=draft)
    _open_versions(page, base_url, demo_bot)

    page.click("#publish-button")

    expect(page.locator(".messagelist .error")).to_contain_text("Not published:")
    expect(page.locator(".messagelist .error")).to_contain_text("en: menu and help")
    assert _rows(page) == [("1", True)]
    assert list(SpecVersion.objects.filter(bot=demo_bot).values_list("number")) == [
        (1,)
    ]
    demo_bot.refresh_from_db()
    assert demo_bot.live_version is not None
    assert demo_bot.live_version.number == 1
    shot(page, "refused")


def test_staff_who_may_only_view_sees_versions_without_publish_or_rollback(
    page: Page, base_url: str, demo_bot: Bot, staff: Staff, shot: Shot
) -> None:
    viewer = get_user_model().objects.create_user(
        username="taras", password=staff.password, is_staff=True
    )
    BotAccess.objects.create(bot=demo_bot, user=viewer, level=BotAccess.Level.VIEW)
    _draft_with_shorter_answers(demo_bot)
    staff_login(page, base_url=base_url, staff=Staff("taras", staff.password))

    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/versions/")

    assert _rows(page) == [("1", True)]
    expect(page.locator("#publish-form")).to_have_count(0)
    expect(page.locator(".rollback-button")).to_have_count(0)
    shot(page, "view-only")
    response = page.request.post(
        f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/versions/",
        form={"action": "publish", "message": "sneaky"},
        headers={"X-CSRFToken": _csrf(page), "Referer": page.url},
    )
    # Refused for the access level, not for a missing CSRF token.
    assert response.status == 403
    assert "CSRF" not in response.text()
    assert list(SpecVersion.objects.filter(bot=demo_bot).values_list("number")) == [
        (1,)
    ]
