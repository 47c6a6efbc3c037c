from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.management.lookup import command_bot_get
from bots.services.telegram_setup import bot_commands_publish, bot_webhook_set
from bots.telegram import TelegramError


class Command(BaseCommand):
    help = "Register the bot's webhook at PUBLIC_BASE_URL and set its command lists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="Allow an http:// URL (local tests).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])
        try:
            url = bot_webhook_set(bot=bot, insecure=options["insecure"])
            calls = bot_commands_publish(bot=bot)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except TelegramError as exc:
            verb = "could not be reached" if exc.retryable else "refused"
            raise CommandError(f"Telegram {verb}: {exc.description}") from None

        self.stdout.write(
            f"webhook set to {url}; command lists set for {calls} languages"
        )
