from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.services.spec_editing import spec_schema_text


class Command(BaseCommand):
    help = "Write the JSON Schema of a bot spec, for editors, to stdout or a file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", help="The file to write; stdout when left out.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = spec_schema_text()
        if not options["output"]:
            # Nothing else on stdout: it is piped into files and editors.
            self.stdout.write(text, ending="")
            return

        path = Path(options["output"])
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}.") from None

        self.stdout.write(f"Wrote the spec schema to {path} ({len(text)} characters).")
