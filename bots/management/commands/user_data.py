import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from botfactory.errors import ApplicationError
from bots.management.lookup import command_bot_get
from bots.services.privacy import (
    telegram_user_id_parse,
    user_data_delete,
    user_data_export,
)


class Command(BaseCommand):
    help = "Export to a file, or delete, everything stored about one Telegram user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument("telegram_user_id", help="The user's Telegram id.")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument(
            "--export", metavar="FILE", help="Write the JSON export here ('-': stdout)."
        )
        action.add_argument(
            "--delete", action="store_true", help="Delete the user's data."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])
        try:
            user_id = telegram_user_id_parse(options["telegram_user_id"])
            if options["delete"]:
                result = user_data_delete(bot=bot, telegram_user_id=user_id)
            else:
                result = user_data_export(bot=bot, telegram_user_id=user_id)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

        if options["delete"]:
            self._deleted_report(result)
        else:
            self._export_write(result, options["export"])

    def _export_write(self, export: dict[str, Any], target: str) -> None:
        text = json.dumps(export, ensure_ascii=False, indent=2) + "\n"
        if target == "-":
            self.stdout.write(text, ending="")
        else:
            try:
                Path(target).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {target}: {exc.strerror}.") from None
        counts = " ".join(
            f"{name}={len(export[name])}"
            for name in (
                "conversations",
                "processed_updates",
                "outbound_messages",
                "llm_requests",
                "blocked_chats",
            )
        )
        bot_data = export["bot_data"]
        own = len(bot_data["rows"]) if bot_data["covered"] else "not_covered"
        (self.stderr if target == "-" else self.stdout).write(
            f"exported {counts} bot_data={own}"
        )

    def _deleted_report(self, result: dict[str, Any]) -> None:
        counts = " ".join(f"{name}={n}" for name, n in result["deleted"].items())
        bot_data = result["bot_data"]
        own = bot_data["deleted"] if bot_data["covered"] else "not_covered"
        self.stdout.write(f"deleted {counts} bot_data={own}")
