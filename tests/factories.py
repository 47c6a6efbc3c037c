import factory

from bots.models import Bot


class BotFactory(factory.django.DjangoModelFactory[Bot]):
    class Meta:
        model = Bot

    name = factory.Sequence(lambda n: f"Bot {n}")
    slug = factory.Sequence(lambda n: f"bot-{n}")
    token = factory.Sequence(lambda n: f"{7100000000 + n}:AAH{'x' * 30}{n:05d}")
    default_locale = "en"
