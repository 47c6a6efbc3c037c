"""Per-bot permissions for staff: view, edit, publish.

A superuser may do everything with every bot. Anyone else may act on a bot
only through a ``BotAccess`` row, and each level includes those below it.
"""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from bots.models import Bot, BotAccess

Level = BotAccess.Level


def bot_access_level(*, user: Any, bot: Bot) -> int:
    """The user's level on the bot, 0 when they may not even see it."""
    if not user.is_active or not user.is_staff:
        return 0
    if user.is_superuser:
        return Level.PUBLISH

    row = BotAccess.objects.filter(bot=bot, user=user).values_list("level", flat=True)

    return next(iter(row), 0)


def bot_access_require(*, user: Any, bot: Bot, level: int) -> None:
    if bot_access_level(user=user, bot=bot) < level:
        raise PermissionDenied


def bots_for_user(*, user: Any, level: int = Level.VIEW) -> QuerySet[Bot]:
    bots = Bot.objects.all()
    if user.is_active and user.is_staff and user.is_superuser:
        return bots
    if not user.is_active or not user.is_staff:
        return bots.none()

    return bots.filter(access__user=user, access__level__gte=level)
