from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.management.lookup import command_bot_get
from bots.services.telegram_setup import bot_polling_run
from bots.telegram import TelegramError


class Command(BaseCommand):
    help = "Delete the bot's webhook and process its updates by long polling."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument(
            "--max-updates",
            type=int,
            default=None,
            help="Stop after this many updates.",
        )
        parser.add_argument(
            "--poll-timeout",
            type=int,
            default=25,
            help="Long-polling timeout in seconds.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])

        if bot.is_demo:
            raise CommandError("The bot has no Telegram token (demo mode).")

        self.stderr.write("Polling; press Ctrl-C to stop.")
        try:
            processed = bot_polling_run(
                bot=bot,
                max_updates=options["max_updates"],
                poll_timeout=options["poll_timeout"],
            )
        except KeyboardInterrupt:
            processed = -1
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except TelegramError as exc:
            verb = "could not be reached" if exc.retryable else "refused"
            raise CommandError(f"Telegram {verb}: {exc.description}") from None

        self.stdout.write(
            "polling stopped"
            if processed < 0
            else f"polling stopped after {processed} updates"
        )
