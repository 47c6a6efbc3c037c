"""What the bot commands share: finding the bot they were given."""

from django.core.management.base import CommandError

from bots.models import Bot
from bots.selectors import bot_get


def command_bot_get(bot_ref: str) -> Bot:
    """Return the bot by id or slug; raise CommandError naming it if none."""
    bot = bot_get(bot_ref=bot_ref)
    if bot is None:
        raise CommandError(f"No bot with id or slug {bot_ref!r}.")

    return bot
