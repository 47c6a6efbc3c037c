"""A bot's translations as its conversations see them: live edits, coverage.

``i18n`` stores the texts but knows nothing of bots; what makes an edit
live (bumping the bot's cache revision) and what the live spec needs from
the texts are decided here.
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F

from bots.models import Bot
from bots.observability import spec_reload_record
from bots.selectors import spec_get, spec_version_get_live
from dsl import builtin_has, spec_translation_refs
from i18n.models import Translation
from i18n.selectors import translation_keys_get
from i18n.services import Forms, translation_set

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
