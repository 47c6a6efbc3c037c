from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.management.lookup import command_bot_get
from bots.services.secrets import bot_webhook_secret_rotate
from bots.telegram import TelegramError, TelegramTimeoutError


class Command(BaseCommand):
    help = (
        "Give a bot a new webhook secret, accepting the old one until Telegram "
        "confirms the new one."
    )

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
            url = bot_webhook_secret_rotate(
                bot=bot,
                insecure=options["insecure"],
                actor_label="command:rotate_webhook_secret",
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except TelegramTimeoutError:
            raise CommandError(
                "Telegram did not answer in time; both secrets stay accepted. "
                "Run this command again to finish the rotation."
            ) from None
        except TelegramError as exc:
            verb = "could not be reached" if exc.retryable else "refused"
            raise CommandError(
                f"Telegram {verb}: {exc.description}; the old secret stays in use."
            ) from None

        self.stdout.write(
            f"webhook secret of bot {bot.pk} replaced; webhook set to {url}"
        )
