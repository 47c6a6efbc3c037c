from typing import Any

from django.core.management.base import BaseCommand, CommandError

from botfactory.errors import ApplicationError
from bots.services.secrets import secrets_reencrypt


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            results = secrets_reencrypt()
        except ApplicationError as exc:
            raise CommandError(exc.message) from None

        for item in results:
            self.stdout.write(
                f"{item.label}: {item.rotated} re-encrypted, "
                f"{item.current} already current, {item.empty} empty"
            )
        rotated = sum(item.rotated for item in results)
        current = sum(item.current for item in results)
        self.stdout.write(
            f"re-encrypted {rotated} values; {current} were already under the first key"
        )
