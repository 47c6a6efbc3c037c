import pytest

from bots.models import Bot
from tests.factories import BotFactory


@pytest.fixture
def bot(db: None) -> Bot:
    bot: Bot = BotFactory.create(default_locale="en")

    return bot


@pytest.fixture
def other_bot(db: None) -> Bot:
    bot: Bot = BotFactory.create(default_locale="en")

    return bot
