import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.lookup import command_bot_get
from bots.services.local_chat import LocalChat, Reply


class Command(BaseCommand):
    help = (
        "Talk to a bot from the terminal ('#N' presses button N); "
        "never contacts Telegram."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument(
            "--locale", help="The language code the user's app reports."
        )
        parser.add_argument(
            "--user-id", type=int, default=1, help="The local user's id."
        )

    def _show(self, replies: list[Reply]) -> None:
        for reply in replies:
            prefix = {"edit": "(edited) ", "notice": "(notice) "}.get(reply.kind, "")
            self.stdout.write(f"bot: {prefix}{reply.text}")
            for number, button in enumerate(reply.buttons, start=1):
                self.stdout.write(f"  [#{number}] {button.label}")

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])
        if bot.live_version_id is None:
            raise CommandError("The bot has no published spec version.")

        chat = LocalChat(bot=bot, locale=options["locale"], user_id=options["user_id"])
        if sys.stdin.isatty():
            self.stderr.write(
                "Type a message or a command such as /start; #N presses button N; "
                "Ctrl-D exits."
            )
        sent = 0
        for raw in sys.stdin:
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            self.stdout.write(f"you: {line}")
            if line.startswith("#") and line[1:].strip().isdigit():
                try:
                    replies = chat.press(int(line[1:].strip()))
                except IndexError as exc:
                    self.stderr.write(f"{exc} Send /start to see the menu.")
                    continue
            else:
                replies = chat.send_text(line)
            sent += 1
            self._show(replies)

        self.stdout.write(f"chat ended after {sent} messages")
