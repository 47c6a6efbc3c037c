"""Publishing, rollback and reload of a bot's spec."""

import logging
from collections import defaultdict
from typing import Any

from django.db import transaction
from django.db.models import F, Max

from botfactory.errors import ApplicationError
from bots.models import Bot, SpecVersion
from bots.observability import spec_reload_record
from dsl import LintIssue, Spec, SpecInvalidError, spec_lint, spec_validate
from i18n.selectors import translation_lengths_get

logger = logging.getLogger(__name__)


class SpecRejectedError(ApplicationError):
    """The spec has validation or lint errors; ``fields`` maps paths to messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(
            "The spec has errors.", code="spec_invalid", extra={"fields": fields}
        )
        self.fields = fields


class NoLiveVersionError(ApplicationError):
    status_code = 409

    def __init__(self) -> None:
        super().__init__("The bot has no published version.", code="no_live_version")


def _fields(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for path, message in items:
        grouped[path or "$"].append(message)

    return dict(grouped)


def spec_check(*, bot: Bot | None, source: Any) -> tuple[Spec, list[LintIssue]]:
    """Validate and lint a spec; return it with its warnings.

    Raises SpecRejectedError listing every validation and lint error by path.
    """
    if not isinstance(source, dict):
        raise SpecRejectedError({"$": ["The spec must be a JSON object."]})
    try:
        spec = spec_validate(source)
    except SpecInvalidError as exc:
        raise SpecRejectedError(
            _fields([(error.path, error.message) for error in exc.errors])
        ) from None

    lengths = (
        translation_lengths_get(bot_id=bot.pk) if bot is not None and bot.pk else None
    )
    keys = (
        {locale: set(texts) for locale, texts in lengths.items()}
        if lengths is not None
        else None
    )
    issues = spec_lint(spec, translation_keys=keys, translation_lengths=lengths)
    errors = [
        (issue.path, issue.message) for issue in issues if issue.severity == "error"
    ]
    if errors:
        raise SpecRejectedError(_fields(errors))

    return spec, [issue for issue in issues if issue.severity != "error"]


def spec_publish(
    *,
    bot: Bot,
    source: dict[str, Any],
    author: Any = None,
    message: str = "",
) -> tuple[SpecVersion, list[LintIssue]]:
    """Validate, lint and publish a spec as the bot's next live version.

    Raises SpecRejectedError when it has errors; nothing changes then.
    """
    spec, warnings = spec_check(bot=bot, source=source)
    with transaction.atomic():
        locked = Bot.objects.select_for_update().get(pk=bot.pk)
        number = (locked.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = SpecVersion.objects.create(
            bot=locked,
            number=number,
            source=spec.as_json(),
            author=author if getattr(author, "pk", None) else None,
            message=message[:500],
        )
        Bot.objects.filter(pk=bot.pk).update(
            live_version=version, cache_revision=F("cache_revision") + 1
        )
        spec_reload_record()
    bot.refresh_from_db(fields=["live_version", "cache_revision"])
    logger.info("Bot %s published spec version %s.", bot.pk, number)

    return version, warnings


def spec_rollback(*, bot: Bot, number: int, author: Any = None) -> SpecVersion:
    """Publish an older version's content as a new version.

    Raises SpecVersion.DoesNotExist for an unknown number.
    """
    old = bot.versions.get(number=number)
    version, _warnings = spec_publish(
        bot=bot, source=old.source, author=author, message=f"Rollback to v{number}"
    )

    return version


def bot_reload(*, bot: Bot) -> SpecVersion:
    """Make every process drop the bot's cached spec and translations.

    Caches are keyed by ``cache_revision``; bumping it is seen by every
    process on its next update. Raises NoLiveVersionError when nothing is
    published.
    """
    if bot.live_version_id is None:
        raise NoLiveVersionError()

    Bot.objects.filter(pk=bot.pk).update(cache_revision=F("cache_revision") + 1)
    spec_reload_record()
    bot.refresh_from_db(fields=["cache_revision", "live_version"])
    logger.info("Bot %s reloaded.", bot.pk)
    assert bot.live_version is not None

    return bot.live_version


def spec_differs_from_live(*, bot: Bot, source: dict[str, Any]) -> bool:
    """Tell whether publishing ``source`` would change the live spec."""
    if bot.live_version is None:
        return True

    return spec_validate(source).as_json() != bot.live_version.source
