import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from bots.models import Bot
from bots.sql import sql_deprovision
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "telegram"
DEMO_TOKEN = fake_bot_token(7000000001, "demo")
DEMO_SECRET = "test-webhook-secret_0123456789"


def fixture_update(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture
def demo_bot(
    transactional_db: None, telegram_api: FakeTelegramControl
) -> Iterator[Bot]:
    """The demo bot with a token, its webhook secret, and its SQL provisioned."""
    call_command(
        "load_demo_bot", "--token", DEMO_TOKEN, "--webhook-secret", DEMO_SECRET
    )
    bot = Bot.objects.get(slug="demo")
    telegram_api.clear_calls()
    yield bot
    sql_deprovision(bot=bot)


class Webhook:
    """Posts updates to a bot's webhook as Telegram does."""

    def __init__(self, client: Client, bot: Bot) -> None:
        self.client = client
        self.bot = bot

    def post(
        self,
        body: Any,
        *,
        secret: str | None = DEMO_SECRET,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        headers = {}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        data = body if raw else json.dumps(body)

        return self.client.post(
            f"/telegram/{self.bot.pk}/webhook",
            data=data,
            content_type=content_type,
            headers=headers,
        )


@pytest.fixture
def webhook(demo_bot: Bot) -> Webhook:
    return Webhook(Client(), demo_bot)
