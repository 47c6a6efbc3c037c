from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.management.lookup import command_bot_get
from bots.models import SpecVersion
from bots.services.transcripts import transcripts_run_all
from dsl import SpecInvalidError


class Command(BaseCommand):
    help = (
        "Run a bot's conversation tests against a spec version; exit with 1 "
        "when one fails."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # --version names the spec version here, not Django's own version.
        return super().create_parser(
            prog_name, subcommand, conflict_handler="resolve", **kwargs
        )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bot", help="The bot's id or slug.")
        parser.add_argument(
            "--version",
            default="live",
            help="A version number, live (the default) or draft.",
        )
        parser.add_argument(
            "--drafts",
            action="store_true",
            help="Also run the transcripts that await review.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bot = command_bot_get(options["bot"])
        choice = str(options["version"])
        version: SpecVersion | dict[str, Any]
        if choice == "draft":
            version = bot.draft_spec
        elif choice == "live":
            if bot.live_version is None:
                raise CommandError(f"Bot {bot.slug!r} has no published version.")
            version = bot.live_version
        elif choice.isdigit():
            found = bot.versions.filter(number=int(choice)).first()
            if found is None:
                raise CommandError(f"Bot {bot.slug!r} has no version {choice}.")
            version = found
        else:
            raise CommandError("--version takes a number, live or draft.")

        try:
            results = transcripts_run_all(
                bot=bot, version=version, include_drafts=options["drafts"]
            )
        except SpecInvalidError as exc:
            problems = "; ".join(f"{e.path or '$'}: {e.message}" for e in exc.errors)
            raise CommandError(f"The draft spec is invalid: {problems}") from None

        for result in results:
            verdict = "PASS" if result.passed else "FAIL"
            self.stdout.write(f"{verdict} {result.name} {result.locale}")
            if not result.passed:
                self.stdout.write(f"  {result.difference}")
        failed = sum(1 for result in results if not result.passed)
        self.stdout.write(f"{len(results) - failed} passed, {failed} failed")
        # A failed test is a result, not an error of the command: the report
        # stays on stdout and the exit status tells scripts.
        if failed:
            raise SystemExit(1)
