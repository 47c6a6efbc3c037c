"""Rotating secrets: encryption keys at rest, bot tokens, webhook secrets."""

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from django.apps import apps
from django.db import models, transaction
from django.db.models.functions import Cast

from botfactory.crypto import DecryptionError, secret_is_current, secret_rotate
from botfactory.errors import ApplicationError
from botfactory.fields import EncryptedTextField
from bots.models import TOKEN_RE, Bot, webhook_secret_generate
from bots.services.audit import (
    Action,
    audit_record,
    secret_fingerprint,
    token_change_record,
)
from bots.services.telegram_setup import bot_webhook_set
from bots.telegram import TelegramError, TelegramTimeoutError, telegram_call

logger = logging.getLogger(__name__)


class SecretRotationError(ApplicationError):
    pass


@dataclass(frozen=True)
class FieldReencryption:
    """What re-encrypting one encrypted column did, in counts only."""

    label: str
    rotated: int
    current: int
    empty: int


def _encrypted_fields() -> Iterator[tuple[type[models.Model], models.Field]]:
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


def _field_reencrypt(
    model: type[models.Model], field: models.Field, unreadable: Counter[str]
) -> FieldReencryption:
    label = f"{model._meta.label}.{field.name}"
    # The stored text, not the decrypted value the field would return.
    rows = (
        model._default_manager.select_for_update()
        .annotate(stored_text=Cast(field.name, models.TextField()))
        .order_by("pk")
        .values_list("pk", "stored_text")
    )
    counts = Counter[str]()
    for pk, stored in rows:
        if not stored:
            counts["empty"] += 1
            continue
        if secret_is_current(stored):
            counts["current"] += 1
            continue
        try:
            rotated = secret_rotate(stored)
        except DecryptionError:
            unreadable[label] += 1
            continue
        # A plain Value skips the field's own encryption of what it is given.
        model._default_manager.filter(pk=pk).update(
            **{field.attname: models.Value(rotated, output_field=models.TextField())}
        )
        counts["rotated"] += 1

    return FieldReencryption(
        label=label,
        rotated=counts["rotated"],
        current=counts["current"],
        empty=counts["empty"],
    )


@transaction.atomic
def secrets_reencrypt() -> list[FieldReencryption]:
    """Re-encrypt every encrypted column with the first configured key.

    Values already under that key are left as they are, so a second run
    changes nothing. Raises SecretRotationError, changing nothing, when a
    value cannot be decrypted with any configured key.
    """
    unreadable = Counter[str]()
    results = [
        _field_reencrypt(model, field, unreadable)
        for model, field in _encrypted_fields()
    ]

    if unreadable:
        where = ", ".join(f"{label}: {count}" for label, count in unreadable.items())
        raise SecretRotationError(
            f"{unreadable.total()} stored values cannot be decrypted with any key "
            f"of FIELD_ENCRYPTION_KEYS ({where}); nothing was changed. Add the "
            "key they were written with after the new one.",
            code="key_missing",
        )
    logger.info(
        "Secrets re-encrypted: %s rotated.", sum(item.rotated for item in results)
    )

    return results


def _bot_locked(bot: Bot) -> Bot:
    return Bot.objects.select_for_update().get(pk=bot.pk)


def bot_token_rotate(
    *, bot: Bot, token: str, insecure: bool = False, actor_label: str = ""
) -> str:
    """Replace a bot's token after Telegram accepts it; return the webhook URL.

    The new token is checked with getMe and the webhook is registered with
    it before it is stored, so a refusal leaves the stored token in use.
    Raises SecretRotationError (malformed token, a token of another bot),
    TelegramSetupError (no public URL or secret) and TelegramError.
    """
    if not TOKEN_RE.fullmatch(token):
        raise SecretRotationError(
            "A Telegram token is digits, a colon and letters, such as 123456789:AAE….",
            code="token_malformed",
        )
    telegram_id = token.partition(":")[0]
    if bot.token and bot.token.partition(":")[0] != telegram_id:
        raise SecretRotationError(
            "The new token belongs to another Telegram bot.", code="token_other_bot"
        )

    me = telegram_call(token=token, method="getMe")
    if not isinstance(me, dict) or str(me.get("id")) != telegram_id:
        raise SecretRotationError(
            "Telegram's getMe does not describe the bot of this token.",
            code="token_mismatch",
        )

    candidate = Bot.objects.get(pk=bot.pk)
    candidate.token = token
    url = bot_webhook_set(bot=candidate, insecure=insecure)

    old = bot.token
    bot.token = token
    bot.username = str(me.get("username") or bot.username)
    bot.save(update_fields=["token", "username", "updated_at"])
    token_change_record(bot=bot, old=old, new=token, actor_label=actor_label)
    logger.info("Token of bot %s rotated.", bot.pk)

    return url


def _webhook_secret_stage(bot: Bot) -> tuple[str, str]:
    with transaction.atomic():
        locked = _bot_locked(bot)
        if locked.webhook_secret_previous:
            raise SecretRotationError(
                "A rotation of this bot's webhook secret is in progress.",
                code="rotation_in_progress",
            )
        old = locked.webhook_secret
        new = webhook_secret_generate()
        locked.webhook_secret_previous = old
        locked.webhook_secret = new
        locked.save(
            update_fields=["webhook_secret", "webhook_secret_previous", "updated_at"]
        )

    return old, new


def _webhook_secret_settle(bot: Bot, *, live: str) -> None:
    with transaction.atomic():
        locked = _bot_locked(bot)
        locked.webhook_secret = live
        locked.webhook_secret_previous = ""
        locked.save(
            update_fields=["webhook_secret", "webhook_secret_previous", "updated_at"]
        )
    bot.webhook_secret = live
    bot.webhook_secret_previous = ""


def _webhook_secret_resume(bot: Bot, *, insecure: bool) -> None:
    # A rotation stopped between its steps: Telegram holds one of the two
    # secrets, both are accepted, and registering the newer one settles it.
    bot_webhook_set(bot=bot, insecure=insecure)
    _webhook_secret_settle(bot, live=bot.webhook_secret)
    logger.info("Interrupted webhook secret rotation of bot %s finished.", bot.pk)


def bot_webhook_secret_rotate(
    *, bot: Bot, insecure: bool = False, actor_label: str = ""
) -> str:
    """Give a bot a new webhook secret without refusing a delivery.

    The old secret stays accepted as the previous one until Telegram
    confirms setWebhook with the new one. When Telegram refuses, the old
    secret is the only one again; when it does not answer in time, both
    stay accepted and running the rotation again finishes it. Returns the
    webhook URL. Raises SecretRotationError (a concurrent rotation),
    TelegramSetupError and TelegramError.
    """
    bot.refresh_from_db(fields=["webhook_secret", "webhook_secret_previous"])
    if bot.webhook_secret_previous:
        _webhook_secret_resume(bot, insecure=insecure)

    old, new = _webhook_secret_stage(bot)
    bot.webhook_secret = new
    try:
        url = bot_webhook_set(bot=bot, insecure=insecure)
    except TelegramTimeoutError:
        # Telegram may have taken the new secret: refusing either would
        # make it retry deliveries for a day.
        bot.webhook_secret_previous = old
        raise
    except (TelegramError, ApplicationError):
        _webhook_secret_settle(bot, live=old)
        raise

    _webhook_secret_settle(bot, live=new)
    audit_record(
        action=Action.SECRET_CHANGE,
        bot=bot,
        actor_label=actor_label,
        detail={
            "change": "rotated",
            "old_fingerprint": secret_fingerprint(old),
            "new_fingerprint": secret_fingerprint(new),
        },
    )
    logger.info("Webhook secret of bot %s rotated.", bot.pk)

    return url
