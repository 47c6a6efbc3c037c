"""Publishing, rollback and reload of a bot's spec."""

import logging
from collections import defaultdict
from typing import Any

from django.db import transaction
from django.db.models import F, Max

from botfactory.errors import ApplicationError
from bots.models import Bot, SpecVersion
from bots.observability import spec_reload_record
from bots.services.audit import Action, audit_record
from bots.services.telegram_setup import bot_commands_publish
from bots.services.transcripts import TranscriptResult, transcripts_run_all
from bots.telegram import TelegramError
from dsl import LintIssue, Spec, SpecInvalidError, spec_lint, spec_validate
from i18n.selectors import translation_lengths_get

logger = logging.getLogger(__name__)


class SpecRejectedError(ApplicationError):
    """The spec has validation or lint errors; ``fields`` maps paths to messages."""

    def __init__(
        self,
        fields: dict[str, list[str]],
        *,
        message: str = "The spec has errors.",
        code: str = "spec_invalid",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, extra={"fields": fields, **(extra or {})})
        self.fields = fields


class TranscriptsFailedError(SpecRejectedError):
    """Conversation tests failed; ``results`` holds the failed ones."""

    def __init__(self, results: list[TranscriptResult]) -> None:
        super().__init__(
            {
                "transcripts": [
                    f"{r.name} ({r.locale}): {r.difference}" for r in results
                ]
            },
            message="The conversation tests failed.",
            code="transcripts_failed",
            extra={
                "transcripts": [
                    {"name": r.name, "locale": r.locale, "difference": r.difference}
                    for r in results
                ]
            },
        )
        self.results = results


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


def _commands_publish(*, bot_id: int, problems: list[str]) -> None:
    bot = Bot.objects.select_related("live_version").get(pk=bot_id)
    if not bot.token or not bot.is_active:
        return
    try:
        bot_commands_publish(bot=bot)
    except TelegramError as exc:
        logger.warning(
            "setMyCommands failed for bot %s after a publish: %s",
            bot_id,
            exc.description,
        )
        problems.append(exc.description)


def _publish(
    *,
    bot: Bot,
    source: Any,
    author: Any,
    message: str,
    action: str,
    detail: dict[str, Any],
    run_transcripts: bool = True,
) -> tuple[SpecVersion, list[LintIssue]]:
    spec, warnings = spec_check(bot=bot, source=source)
    checked = spec.as_json()
    results = transcripts_run_all(bot=bot, version=checked) if run_transcripts else []
    failed = [result for result in results if not result.passed]
    if failed:
        raise TranscriptsFailedError(failed)

    # Filled by the hook below when it runs at once (no outer transaction).
    problems: list[str] = []

    def commands_publish() -> None:
        _commands_publish(bot_id=bot.pk, problems=problems)

    with transaction.atomic():
        locked = Bot.objects.select_for_update().get(pk=bot.pk)
        number = (locked.versions.aggregate(top=Max("number"))["top"] or 0) + 1
        version = SpecVersion.objects.create(
            bot=locked,
            number=number,
            source=checked,
            author=author if getattr(author, "pk", None) else None,
            message=message[:500],
        )
        Bot.objects.filter(pk=bot.pk).update(
            live_version=version, cache_revision=F("cache_revision") + 1
        )
        audit_record(
            action=action,
            bot=locked,
            actor=author,
            detail={"version": number, **detail},
        )
        spec_reload_record()
        # A Telegram failure is logged and reported, never undoes the publish.
        transaction.on_commit(commands_publish, robust=True)
    bot.refresh_from_db(fields=["live_version", "cache_revision"])
    logger.info("Bot %s published spec version %s.", bot.pk, number)

    warnings += [
        LintIssue(
            path="commands",
            message=f"The command list was not set in Telegram: {problem}",
            code="commands_not_set",
            severity="warning",
        )
        for problem in problems
    ]

    return version, warnings


def spec_publish(
    *,
    bot: Bot,
    source: dict[str, Any],
    author: Any = None,
    message: str = "",
    run_transcripts: bool = True,
) -> tuple[SpecVersion, list[LintIssue]]:
    """Validate, lint and test a spec, then publish it as the next live version.

    The bot's non-draft transcripts run against it first, unless
    ``run_transcripts`` is off (for content shipped with its tests passed).
    Once committed, an active bot with a token gets its command list in
    Telegram for each locale; a Telegram failure is logged and returned as
    a warning (code ``commands_not_set``). Raises SpecRejectedError when
    the spec has errors and TranscriptsFailedError (a SpecRejectedError)
    when a transcript fails; nothing changes then.
    """
    return _publish(
        bot=bot,
        source=source,
        author=author,
        message=message,
        action=Action.PUBLISH,
        detail={},
        run_transcripts=run_transcripts,
    )


def spec_rollback(
    *, bot: Bot, number: int, author: Any = None
) -> tuple[SpecVersion, list[LintIssue]]:
    """Publish an older version's content as a new version.

    Raises SpecVersion.DoesNotExist for an unknown number, and what
    spec_publish raises (the transcripts run against the old content).
    """
    old = bot.versions.get(number=number)

    return _publish(
        bot=bot,
        source=old.source,
        author=author,
        message=f"Rollback to v{number}",
        action=Action.ROLLBACK,
        detail={"from_version": number},
    )


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
