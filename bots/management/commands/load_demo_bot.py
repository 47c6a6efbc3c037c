from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.services.bots import demo_bot_load


class Command(BaseCommand):
    help = "Create or update the demo café bot and publish its spec if it changed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--token", help="Telegram bot token; without one, demo mode."
        )
        parser.add_argument(
            "--webhook-secret", help="Secret Telegram sends with updates."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            bot = demo_bot_load(
                token=options["token"], webhook_secret=options["webhook_secret"]
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

        self.stdout.write(f"bot_id={bot.pk} webhook_path={bot.webhook_path}")
