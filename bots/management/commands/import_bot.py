from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.services.transfer import bot_file_loads, bot_import


class Command(BaseCommand):
    help = (
        "Create a bot from a bot file (export_bot's format), or update the bot "
        "of its slug with --replace; tokens and secrets are never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The bot file to read.")
        parser.add_argument("--slug", help="Use this slug instead of the file's.")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Update the existing bot with this slug instead of refusing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path} cannot be read: {exc.strerror}.") from None

        try:
            data = bot_file_loads(content=content)
            result = bot_import(
                data=data, slug=options["slug"], replace=options["replace"]
            )
        except ApplicationError as exc:
            # Refusals list every problem by path, one per line.
            fields = exc.extra.get("fields") or {}
            lines = [
                f"{where}: {text}" for where, texts in fields.items() for text in texts
            ]
            raise CommandError(
                "\n".join([f"{path} was not imported ({exc.code}):", *lines])
                if lines
                else f"{path} was not imported: {exc.message}"
            ) from None

        verb = "created" if result.created else "updated"
        published = (
            f"published as version {result.published_version}"
            if result.published_version is not None
            else "live version unchanged"
        )
        self.stdout.write(
            f"bot {result.bot.slug} {verb}: {result.translations} translations, "
            f"{result.transcripts} transcripts, {published}"
        )
