from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Create a REST API token for a staff user and print it, once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not user.is_active or not user.is_staff:
            raise CommandError(
                f"User {username!r} is not active staff; the API is for staff only."
            )

        # Only a digest is stored: this is the one time the key can be read.
        token, key = AuthToken.objects.create(user=user)

        expiry = token.expiry.isoformat() if token.expiry else "never"
        self.stderr.write(f"API token for {username} created; it expires {expiry}.")
        self.stdout.write(key)
