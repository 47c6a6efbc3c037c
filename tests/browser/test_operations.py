from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot
from bots.telegram import telegram_call
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

Shot = Callable[[Page, str], Path]

TOKEN = fake_bot_token(7000000002, "ops")
SECRET = "browser-ops_webhook-secret-0123456789"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "telegram"


def _webhook_post(page: Page, base_url: str, bot: Bot, fixture: str) -> int:
    update = (FIXTURES / f"{fixture}.json").read_text(encoding="utf-8")
    response = page.request.post(
        f"{base_url}{bot.webhook_path}",
        data=update,
        headers={
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": SECRET,
        },
    )

    return response.status


def test_operations_count_updates_and_show_telegrams_view_of_the_webhook(
    staff_page: Page,
    base_url: str,
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    shot: Shot,
) -> None:
    page = staff_page
    demo_bot.token = TOKEN
    demo_bot.webhook_secret = SECRET
    demo_bot.save(update_fields=["token", "webhook_secret"])
    telegram_call(
        token=TOKEN,
        method="setWebhook",
        params={"url": f"https://bots.example.com{demo_bot.webhook_path}"},
    )
    telegram_api.queue_updates(TOKEN, [{"update_id": 1}, {"update_id": 2}])
    telegram_api.set_webhook_error(TOKEN, "Connection refused", date=1767225600)
    statuses = [
        _webhook_post(page, base_url, demo_bot, name)
        for name in ["private_start", "poll"]
    ]

    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Operations").click()

    assert statuses == [200, 200]
    for window in ["hour", "day"]:
        row = page.locator(f"#ops-updates tr.window-{window}")
        assert [
            row.locator(f"td.{name}").inner_text()
            for name in ["updates", "processed", "ignored", "send-failures"]
        ] == ["2", "1", "1", "0"]
    expect(page.locator("#ops-outbox td.pending")).to_have_text("0")
    expect(page.locator("#ops-llm td.breaker")).to_have_text("closed")
    expect(page.locator("#ops-webhook td.host")).to_have_text("bots.example.com")
    expect(page.locator("#ops-webhook td.pending-updates")).to_have_text("2")
    expect(page.locator("#ops-webhook td.last-error")).to_have_text(
        "2026-01-01 00:00:00 UTC: Connection refused"
    )
    assert [call["method"] for call in telegram_api.calls("getWebhookInfo")] == [
        "getWebhookInfo"
    ]
    shot(page, "operations")
