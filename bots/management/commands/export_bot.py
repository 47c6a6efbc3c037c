from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.lookup import command_bot_get
from bots.services.transfer import bot_export, bot_file_dumps


class Command(BaseCommand):
    help = (
        "Write a bot (settings, draft and live spec, translations, transcripts; "
        "no secrets) as one JSON file, to standard output or --output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument(
            "--output", type=Path, help="Write to this file instead of stdout."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])

        text = bot_file_dumps(data=bot_export(bot=bot))

        output: Path | None = options["output"]
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{output} cannot be written: {exc.strerror}.") from None
        self.stderr.write(f"bot {bot.slug} exported to {output}")
