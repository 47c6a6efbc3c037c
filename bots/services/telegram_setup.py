"""Connecting a bot to Telegram: webhook, command list, long polling."""

import logging
import time
from typing import Any

from django.conf import settings

from botfactory.errors import ApplicationError
from bots.models import Bot
from bots.selectors import spec_get
from bots.services.outbox import outbox_sweep
from bots.services.updates import update_process
from bots.telegram import TelegramError, telegram_call
from i18n.locales import telegram_language_code
from i18n.selectors import translator_get

logger = logging.getLogger(__name__)

# The update types the runtime acts on; Telegram sends only these.
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
_POLL_TIMEOUT_SECONDS = 25
_SWEEP_EVERY_SECONDS = 30.0


class TelegramSetupError(ApplicationError):
    pass


def _require_token(bot: Bot) -> str:
    if not bot.token:
        raise TelegramSetupError(
            "The bot has no Telegram token (demo mode).", code="no_token"
        )

    return bot.token


def _plain_text(translator: Any, key: str) -> str:
    return str(translator.pattern(key) or key)


def bot_commands_publish(*, bot: Bot) -> int:
    """Set the bot's command list in Telegram for each of its locales.

    Returns the number of setMyCommands calls. Raises TelegramError.
    """
    token = _require_token(bot)
    if bot.live_version is None:
        return 0

    spec = spec_get(version=bot.live_version)
    calls = 0
    scopes: list[tuple[str | None, str]] = [(None, spec.default_locale)]
    seen: set[str] = set()
    for locale in spec.locales:
        code = telegram_language_code(locale)
        if code and code not in seen:
            seen.add(code)
            scopes.append((code, locale))
    for language_code, locale in scopes:
        translator = translator_get(
            bot_id=bot.pk,
            revision=bot.cache_revision,
            locale=locale,
            default_locale=spec.default_locale,
        )
        commands = [
            {"command": name, "description": _plain_text(translator, key)[:256] or name}
            for name, key in spec.command_list()
        ]
        params: dict[str, Any] = {"commands": commands}
        if language_code:
            params["language_code"] = language_code
        telegram_call(token=token, method="setMyCommands", params=params)
        calls += 1

    return calls


def bot_webhook_set(*, bot: Bot, insecure: bool = False) -> str:
    """Register the bot's webhook at PUBLIC_BASE_URL and return its URL.

    Raises TelegramSetupError when PUBLIC_BASE_URL is missing or not HTTPS
    (unless ``insecure``), and TelegramError when Telegram refuses.
    """
    token = _require_token(bot)
    base = settings.PUBLIC_BASE_URL
    if not base:
        raise TelegramSetupError("PUBLIC_BASE_URL is not set.", code="no_public_url")
    if not base.startswith("https://") and not insecure:
        raise TelegramSetupError(
            "PUBLIC_BASE_URL must be HTTPS (use --insecure only for local tests).",
            code="not_https",
        )
    if not bot.webhook_secret:
        raise TelegramSetupError("The bot has no webhook secret.", code="no_secret")

    url = f"{base}{bot.webhook_path}"
    telegram_call(
        token=token,
        method="setWebhook",
        params={
            "url": url,
            "secret_token": bot.webhook_secret,
            "allowed_updates": ALLOWED_UPDATES,
        },
    )
    logger.info("Webhook set for bot %s.", bot.pk)

    return url


def bot_polling_run(
    *,
    bot: Bot,
    max_updates: int | None = None,
    poll_timeout: int = _POLL_TIMEOUT_SECONDS,
) -> int:
    """Delete the webhook, then long-poll and process updates.

    Runs until interrupted, or until ``max_updates`` updates are processed.

    Returns the number of updates processed. Raises TelegramError when
    Telegram refuses the token.
    """
    token = _require_token(bot)
    telegram_call(token=token, method="deleteWebhook", params={})
    offset: int | None = None
    processed = 0
    last_sweep = time.monotonic()
    while max_updates is None or processed < max_updates:
        params: dict[str, Any] = {
            "timeout": poll_timeout,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if offset is not None:
            params["offset"] = offset
        try:
            updates = telegram_call(token=token, method="getUpdates", params=params)
        except TelegramError as exc:
            if not exc.retryable:
                raise
            logger.warning("getUpdates failed: %s", exc.description)
            time.sleep(1.0)
            continue
        for update in (updates or [])[
            : None if max_updates is None else max_updates - processed
        ]:
            update_process(bot=bot, update=update)
            offset = int(update["update_id"]) + 1
            processed += 1
        # Without beat (the embedded default) the poller sweeps the outbox.
        if time.monotonic() - last_sweep > _SWEEP_EVERY_SECONDS:
            outbox_sweep()
            last_sweep = time.monotonic()

    return processed
