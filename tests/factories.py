from typing import Any

import factory
from django.contrib.auth import get_user_model

from bots.models import Bot, BotAccess


class BotFactory(factory.django.DjangoModelFactory[Bot]):
    class Meta:
        model = Bot

    name = factory.Sequence(lambda n: f"Bot {n}")
    slug = factory.Sequence(lambda n: f"bot-{n}")
    token = factory.Sequence(lambda n: f"{7100000000 + n}:AAH{'x' * 30}{n:05d}")
    default_locale = "en"


class StaffUserFactory(factory.django.DjangoModelFactory[Any]):
    """A member of staff who is not a superuser: bots only through BotAccess."""

    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"staff-{n}")
    is_staff = True
    is_superuser = False


class BotAccessFactory(factory.django.DjangoModelFactory[BotAccess]):
    class Meta:
        model = BotAccess

    bot = factory.SubFactory(BotFactory)
    user = factory.SubFactory(StaffUserFactory)
    level = BotAccess.Level.VIEW
