import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the admin superuser with a random password printed once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            self.stdout.write(f"user {username} exists; password unchanged")
            return

        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(
            username=username, email="", password=password
        )
        self.stdout.write(f"{username} password: {password}")
