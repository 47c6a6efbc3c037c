import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.management.lookup import command_bot_get
from bots.services.secrets import bot_token_rotate
from bots.telegram import TelegramError


class Command(BaseCommand):
    help = (
        "Replace a bot's Telegram token, read from standard input or a file, "
        "once Telegram accepts it, and register the webhook with it."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # "--token VALUE" must not pass for an abbreviation of --token-file.
        return super().create_parser(
            prog_name, subcommand, allow_abbrev=False, **kwargs
        )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        # Never an argument value: command lines are visible to every user
        # of the machine and kept in shell histories.
        parser.add_argument(
            "--token-file",
            type=Path,
            help="Read the token from this file instead of standard input.",
        )
        parser.add_argument(
            "--insecure",
            action="store_true",
            help="Allow an http:// URL (local tests).",
        )

    def _token_read(self, path: Path | None) -> str:
        try:
            text = path.read_text(encoding="utf-8") if path else sys.stdin.read()
        except OSError as exc:
            raise CommandError(f"The token cannot be read: {exc.strerror}.") from None
        except UnicodeError:
            raise CommandError("The token cannot be read: it is not UTF-8.") from None

        return text.strip()

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])
        token = self._token_read(options["token_file"])

        try:
            url = bot_token_rotate(
                bot=bot,
                token=token,
                insecure=options["insecure"],
                actor_label="command:rotate_bot_token",
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        except TelegramError as exc:
            verb = "could not be reached" if exc.retryable else "refused the token"
            raise CommandError(
                f"Telegram {verb}: {exc.description}; the stored token is unchanged."
            ) from None

        self.stdout.write(f"token of bot {bot.pk} replaced; webhook set to {url}")
