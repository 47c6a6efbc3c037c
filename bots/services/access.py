"""Per-bot permissions for staff: view, edit, publish.

A superuser may do everything with every bot. Anyone else may act on a bot
only through a ``BotAccess`` row, and each level includes those below it:
VIEW shows the bot, its studio pages and its records; EDIT also changes its
draft, settings, translations and transcripts; PUBLISH also publishes, rolls
back and deletes it. Django's model permissions are not consulted for a
bot's own records: the ``BotAccess`` rows are the one rule, for the admin
and for the REST API alike (an API token acts as the user it belongs to).
Creating a bot takes a superuser or the ``bots.add_bot`` permission; whoever
creates one without being a superuser is given PUBLISH on it.
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404

from bots.models import Bot, BotAccess
from bots.services.audit import Action, audit_record

logger = logging.getLogger(__name__)

Level = BotAccess.Level


def _is_staff(user: Any) -> bool:
    return bool(user.is_active and user.is_staff)


def bot_access_level(*, user: Any, bot: Bot) -> int:
    """The user's level on the bot, 0 when they may not even see it."""
    if not _is_staff(user):
        return 0
    if user.is_superuser:
        return Level.PUBLISH

    row = BotAccess.objects.filter(bot=bot, user=user).values_list("level", flat=True)

    return next(iter(row), 0)


def bot_access_require(*, user: Any, bot: Bot, level: int) -> None:
    if bot_access_level(user=user, bot=bot) < level:
        raise PermissionDenied


def bot_get_for_user(*, user: Any, bot_id: int, level: int) -> Bot:
    """Return the bot when the user holds ``level`` on it.

    Raises Http404 when there is no such bot or the user may not see it (so
    a stranger learns nothing of which ids exist), and PermissionDenied
    when they may see it but not act at ``level``.
    """
    bot = Bot.objects.filter(pk=bot_id).first()
    held = bot_access_level(user=user, bot=bot) if bot is not None else 0
    if bot is None or held < Level.VIEW:
        raise Http404("There is no such bot.")
    if held < level:
        raise PermissionDenied

    return bot


def bots_for_user(*, user: Any, level: int = Level.VIEW) -> QuerySet[Bot]:
    bots = Bot.objects.all()
    if _is_staff(user) and user.is_superuser:
        return bots
    if not _is_staff(user):
        return bots.none()

    return bots.filter(access__user=user, access__level__gte=level)


def user_has_any_access(*, user: Any, level: int = Level.VIEW) -> bool:
    """Tell whether the user holds ``level`` on at least one bot."""
    if not _is_staff(user):
        return False
    if user.is_superuser:
        return True

    return BotAccess.objects.filter(user=user, level__gte=level).exists()


def user_may_add_bot(*, user: Any) -> bool:
    return _is_staff(user) and (user.is_superuser or user.has_perm("bots.add_bot"))


def _level_label(level: int | None) -> str:
    # Stored in the audit detail: a fixed English word, never a translation.
    return Level(level).name.lower() if level else "none"


@transaction.atomic
def bot_access_grant(*, bot: Bot, user: Any, level: int, actor: Any) -> BotAccess:
    """Give the user ``level`` on the bot (replacing what they held); audited."""
    previous = (
        BotAccess.objects.select_for_update()
        .filter(bot=bot, user=user)
        .values_list("level", flat=True)
        .first()
    )
    access, _created = BotAccess.objects.update_or_create(
        bot=bot, user=user, defaults={"level": level}
    )
    if previous != level:
        audit_record(
            action=Action.ACCESS_CHANGE,
            bot=bot,
            actor=actor,
            detail={
                "user": user.get_username(),
                "from": _level_label(previous),
                "to": _level_label(level),
            },
        )
        logger.info("Access of user %s to bot %s set to %s.", user.pk, bot.pk, level)

    return access


@transaction.atomic
def bot_access_revoke(*, bot: Bot, user: Any, actor: Any) -> bool:
    """Take away the user's access to the bot; audited. False if they had none."""
    previous = (
        BotAccess.objects.select_for_update()
        .filter(bot=bot, user=user)
        .values_list("level", flat=True)
        .first()
    )
    if previous is None:
        return False

    BotAccess.objects.filter(bot=bot, user=user).delete()
    audit_record(
        action=Action.ACCESS_CHANGE,
        bot=bot,
        actor=actor,
        detail={
            "user": user.get_username(),
            "from": _level_label(previous),
            "to": "none",
        },
    )
    logger.info("Access of user %s to bot %s revoked.", user.pk, bot.pk)

    return True
