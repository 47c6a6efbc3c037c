"""A bot's translations as its conversations see them: live edits, coverage.

``i18n`` stores the texts but knows nothing of bots; what makes an edit
live (bumping the bot's cache revision) and what the live spec needs from
the texts are decided here.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import F

from bots.models import Bot
from bots.observability import spec_reload_record
from bots.selectors import spec_get, spec_version_get_live
from bots.services.audit import Action, audit_record
from dsl import (
    Spec,
    SpecInvalidError,
    builtin_has,
    spec_translation_refs,
    spec_validate,
)
from i18n.locales import locale_normalize
from i18n.models import Translation
from i18n.selectors import (
    TranslationGrid,
    translation_grid_get,
    translation_keys_get,
    translation_locales_list,
)
from i18n.services import Forms, translation_set
from i18n.transfer import TranslationImportReport, translations_import

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocaleCoverage:
    """How many keys the spec uses, and which of them a locale lacks."""

    total: int
    missing: list[str]


def bot_translation_set(
    *, bot: Bot, locale: str, key: str, forms: Forms
) -> Translation:
    """Create or replace one translation of a bot and make it live at once.

    The text is stored by ``i18n``'s ``translation_set``; the bot's cache
    revision is then bumped in the same transaction, so every process reads
    the new text on its next update. Raises ``TranslationInvalidError``
    (nothing written, revision unchanged) for a malformed locale, key or
    forms.
    """
    with transaction.atomic():
        translation = translation_set(
            bot_id=bot.pk, locale=locale, key=key, forms=forms
        )
        Bot.objects.filter(pk=bot.pk).update(cache_revision=F("cache_revision") + 1)
        spec_reload_record()
    bot.refresh_from_db(fields=["cache_revision"])
    logger.info("Bot %s translation %s set in %s.", bot.pk, key, translation.locale)

    return translation


def bot_translation_coverage_get(*, bot: Bot) -> dict[str, LocaleCoverage]:
    """Return, per locale, how many keys the bot's spec uses and which lack text.

    The keys and locales are those of the live spec (a key with a built-in
    text, such as ``bf.back``, is never missing). A bot with nothing
    published has no spec to ask, so its own translations stand in: their
    locales, and every key any of them has. Nothing is raised beyond
    database errors.
    """
    present = translation_keys_get(bot_id=bot.pk)
    live = spec_version_get_live(bot=bot)
    if live is not None:
        spec = spec_get(version=live)
        locales = list(spec.locales)
        used = {key for _path, key in spec_translation_refs(spec)}
    else:
        locales = sorted(present)
        used = set().union(*present.values())

    coverage: dict[str, LocaleCoverage] = {}
    for locale in locales:
        keys = present.get(locale, set())
        missing = sorted(
            key for key in used if key not in keys and not builtin_has(key, locale)
        )
        coverage[locale] = LocaleCoverage(total=len(used), missing=missing)

    return coverage


def _spec_for_texts(*, bot: Bot) -> Spec | None:
    # The draft is what staff are translating for; while it does not
    # validate, the live spec tells which locales and keys there are.
    try:
        return spec_validate(bot.draft_spec)
    except SpecInvalidError:
        live = spec_version_get_live(bot=bot)

    return spec_get(version=live) if live is not None else None


def _source_locale(bot: Bot) -> str:
    return locale_normalize(bot.default_locale) or bot.default_locale


def bot_translation_grid_get(
    *, bot: Bot, only_problems: bool = False
) -> TranslationGrid:
    """Return the bot's translations table: every key, every locale, each state.

    The source locale is the bot's default locale; the spec (the draft, or
    the live one while the draft does not validate) adds its locales and
    the keys it uses. A key with a built-in text is never missing. Nothing
    is raised beyond database errors.
    """
    spec = _spec_for_texts(bot=bot)
    locales = [locale_normalize(code) or code for code in spec.locales] if spec else []
    keys = {key for _path, key in spec_translation_refs(spec)} if spec else set()

    return translation_grid_get(
        bot_id=bot.pk,
        source_locale=_source_locale(bot),
        locales=locales,
        keys=keys,
        builtin=builtin_has,
        only_problems=only_problems,
    )


def bot_translation_locales_list(*, bot: Bot) -> list[str]:
    """Return the locales the bot may have texts in: its default locale,
    the spec's locales and any it already has texts in.

    Nothing is raised beyond database errors.
    """
    spec = _spec_for_texts(bot=bot)
    codes = [_source_locale(bot), *(spec.locales if spec else [])]
    codes += translation_locales_list(bot_id=bot.pk)

    return list(dict.fromkeys(locale_normalize(code) or code for code in codes))


def bot_translations_import(
    *, bot: Bot, data: Mapping[str, Any], apply: bool, actor: Any = None
) -> TranslationImportReport:
    """Import translations (the shape of ``i18n.transfer.translations_export``).

    Only the bot's locales (``bot_translation_locales_list``) are taken.
    With ``apply``, what differs is written and, when anything did, the
    bot's cache revision is bumped and the import audited, all in one
    transaction. Raises ``TranslationInvalidError`` (nothing written,
    revision unchanged).
    """
    locales = bot_translation_locales_list(bot=bot)
    with transaction.atomic():
        report = translations_import(bot=bot, data=data, apply=apply, locales=locales)
        if not (report.applied and report.has_changes):
            return report

        Bot.objects.filter(pk=bot.pk).update(cache_revision=F("cache_revision") + 1)
        spec_reload_record()
        audit_record(
            action=Action.IMPORT,
            bot=bot,
            actor=actor,
            detail={
                "translations": {
                    "added": len(report.added),
                    "changed": len(report.changed),
                }
            },
        )
    bot.refresh_from_db(fields=["cache_revision"])
    logger.info(
        "Bot %s translations imported: %s added, %s changed.",
        bot.pk,
        len(report.added),
        len(report.changed),
    )

    return report
