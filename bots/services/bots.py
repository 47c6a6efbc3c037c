"""Creating and configuring bots."""

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from botfactory.errors import ApplicationError
from bots.models import TOKEN_RE, WEBHOOK_SECRET_VALIDATOR, Bot
from bots.services.specs import bot_reload, spec_differs_from_live, spec_publish
from bots.services.telegram_setup import bot_webhook_set
from bots.services.transcripts import transcripts_import
from bots.sql import sql_provision, sql_schema_apply
from bots.telegram import TelegramError, telegram_call
from i18n.selectors import translations_export
from i18n.services import translations_import

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_SLUG = "demo"


class BotConfigError(ApplicationError):
    pass


def webhook_secret_check(secret: str) -> None:
    """Raise BotConfigError unless Telegram would accept the secret."""
    try:
        WEBHOOK_SECRET_VALIDATOR(secret)
    except ValidationError:
        raise BotConfigError(
            "The webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -.",
            code="webhook_secret_invalid",
        ) from None


def token_check(token: str) -> None:
    """Raise BotConfigError unless the text looks like a Telegram bot token."""
    if token and not TOKEN_RE.fullmatch(token):
        raise BotConfigError(
            "A Telegram token is digits, a colon and letters, such as 123456789:AAE….",
            code="token_malformed",
        )


def bot_username_refresh(*, bot: Bot) -> str:
    """Ask Telegram for the bot's username (getMe) and store it.

    Raises TelegramError subclasses when Telegram cannot be reached.
    """
    me = telegram_call(token=bot.token, method="getMe")
    username = str(me.get("username") or "") if isinstance(me, dict) else ""
    if username != bot.username:
        bot.username = username
        bot.save(update_fields=["username", "updated_at"])

    return username


def _demo_files() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    spec = json.loads((DEMO_DIR / "spec.json").read_text(encoding="utf-8"))
    translations = json.loads(
        (DEMO_DIR / "translations.json").read_text(encoding="utf-8")
    )
    transcripts = json.loads(
        (DEMO_DIR / "transcripts.json").read_text(encoding="utf-8")
    )

    return spec, translations, transcripts


def bot_sql_schema_apply(*, bot: Bot) -> None:
    """Set up the bot's own database and run its stored SQL schema there.

    The DDL for this server's database (``bot.sql_schema``) runs as the
    runtime's own user in the bot's schema (or file), in one transaction,
    and the bot's role is granted its tables. Safe to re-run when the DDL
    is. Raises SqlSchemaError (code ``sql_schema_invalid``, with the
    database's message) when a statement fails; nothing of the DDL is
    applied then.
    """
    sql_provision(bot=bot)
    if bot.sql_schema.strip():
        sql_schema_apply(bot=bot, statements=bot.sql_schema)


def demo_bot_load(
    *, token: str | None = None, webhook_secret: str | None = None
) -> Bot:
    """Create or update the demo bot and publish its spec when it changed.

    An option given replaces the stored value; one left out keeps it (an
    empty token returns the bot to demo mode). The draft spec, the
    translations, the SQL setting and schema and the conversation tests
    shipped with it are reset; the tests run before the publish. Raises
    BotConfigError for a malformed token or webhook secret.
    """
    if webhook_secret is not None:
        webhook_secret_check(webhook_secret)
    if token:
        token_check(token)
    spec, translations, transcripts = _demo_files()

    with transaction.atomic():
        bot, _created = Bot.objects.select_for_update().get_or_create(
            slug=DEMO_SLUG,
            defaults={"name": "Café demo", "default_locale": spec["default_locale"]},
        )
        if token is not None:
            bot.token = token
        if webhook_secret is not None:
            bot.webhook_secret = webhook_secret
        bot.allows_sql_writes = True
        bot.draft_spec = spec
        bot.sql_schema_postgresql = (DEMO_DIR / "schema_postgresql.sql").read_text(
            encoding="utf-8"
        )
        bot.sql_schema_sqlite = (DEMO_DIR / "schema_sqlite.sql").read_text(
            encoding="utf-8"
        )
        bot.save()
        translations_changed = translations_export(bot_id=bot.pk) != translations
        if translations_changed:
            translations_import(bot_id=bot.pk, data=translations, replace=True)
        transcripts_import(bot=bot, data=transcripts)

    bot_sql_schema_apply(bot=bot)
    if bot.token:
        try:
            bot_username_refresh(bot=bot)
        except TelegramError as exc:
            logger.warning("getMe failed for the demo bot: %s", exc.description)

    if spec_differs_from_live(bot=bot, source=spec):
        # The shipped spec and transcripts pass together (the suite checks
        # it); replaying them here would only leave order numbers used up
        # in a fresh demo.
        spec_publish(
            bot=bot,
            source=spec,
            message="Demo spec shipped with BotFactory",
            run_transcripts=False,
        )
    elif translations_changed:
        bot_reload(bot=bot)

    return bot


def bot_deactivate(*, bot: Bot) -> Bot:
    """Stop serving a bot: its updates are dropped and its webhook deleted.

    The webhook is deleted after the commit; a Telegram failure is logged
    (updates that still arrive get 200 and are dropped and counted).
    """
    with transaction.atomic():
        Bot.objects.filter(pk=bot.pk).update(is_active=False)
        bot.is_active = False
        if bot.token:
            transaction.on_commit(lambda: _webhook_delete(bot), robust=True)
    logger.info("Bot %s deactivated.", bot.pk)

    return bot


def bot_activate(*, bot: Bot) -> Bot:
    """Serve a bot again; register its webhook anew when a public URL is set."""
    Bot.objects.filter(pk=bot.pk).update(is_active=True)
    bot.is_active = True
    logger.info("Bot %s activated.", bot.pk)
    if bot.token and settings.PUBLIC_BASE_URL:
        try:
            bot_webhook_set(bot=bot)
        except (TelegramError, ApplicationError) as exc:
            logger.warning("Webhook not set for bot %s: %s", bot.pk, exc)

    return bot


def _webhook_delete(bot: Bot) -> None:
    try:
        telegram_call(token=bot.token, method="deleteWebhook", params={})
    except TelegramError as exc:
        logger.warning("deleteWebhook failed for bot %s: %s", bot.pk, exc.description)
