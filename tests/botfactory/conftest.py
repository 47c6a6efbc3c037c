# The demo bot and the fake Telegram Bot API, for the end-to-end log check.
from tests.bots.conftest import demo_bot, fake_telegram_url, telegram_api

__all__ = ["demo_bot", "fake_telegram_url", "telegram_api"]
