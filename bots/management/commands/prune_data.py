from typing import Any

from django.core.management.base import BaseCommand

from bots.services.lifecycle import data_prune


class Command(BaseCommand):
    help = (
        "Delete processed updates, outbound messages and LLM requests past retention."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = data_prune()

        counts = " ".join(f"{name}={count}" for name, count in result.as_dict().items())
        self.stdout.write(f"pruned {counts}")
