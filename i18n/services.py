import logging
from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from botfactory.errors import ApplicationError
from i18n.locales import locale_normalize
from i18n.models import Translation
from i18n.validation import (
    forms_from_input,
    forms_problems,
    key_problems,
    locale_problems,
)

logger = logging.getLogger(__name__)

Forms = Mapping[str, str] | str
ImportData = Mapping[str, Mapping[str, Forms]]


class TranslationInvalidError(ApplicationError):
    """Translations were refused; ``fields`` maps each path to its messages."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        super().__init__(
            _("The translations are invalid."),
            code="translation_invalid",
            extra={"fields": fields},
        )
        self.fields = fields


def _path(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _forms_problems_at(
    path: str, forms: object, *, locale: str | None
) -> dict[str, list[str]]:
    problems = forms_problems(forms, locale=locale)

    return {_path(path, category): messages for category, messages in problems.items()}


def _entry_problems(
    path: str, key: object, forms: object, *, locale: str | None
) -> dict[str, list[str]]:
    problems = _forms_problems_at(path, forms, locale=locale)
    if found := key_problems(key):
        problems[path] = found + problems.get(path, [])

    return problems


def _import_rows(data: object) -> dict[tuple[str, str], dict[str, str]]:
    """Check a whole import; return ``{(locale, key): forms}`` as stored."""
    if not isinstance(data, Mapping):
        raise TranslationInvalidError({"": [_("Give a mapping of locales to keys.")]})

    problems: dict[str, list[str]] = {}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    seen: dict[str, str] = {}
    for code, entries in data.items():
        tag = locale_normalize(code) if isinstance(code, str) else None
        path = str(code)
        if found := locale_problems(code):
            problems[path] = found
        elif tag is not None and tag in seen:
            problems[path] = [_("The same locale as %(other)s.") % {"other": seen[tag]}]
        elif tag is not None:
            seen[tag] = path
        if not isinstance(entries, Mapping):
            problems.setdefault(path, []).append(_("Give a mapping of keys to texts."))
            continue

        for key, forms in entries.items():
            entry = _entry_problems(_path(path, str(key)), key, forms, locale=tag)
            problems.update(entry)
            if tag is not None and not entry:
                rows[(tag, key)] = forms_from_input(forms)

    if problems:
        raise TranslationInvalidError(problems)

    return rows


def translation_set(*, bot_id: int, locale: str, key: str, forms: Forms) -> Translation:
    """Create or replace the text of ``key`` in ``locale`` for a bot.

    ``forms`` is a plain text (stored as ``{"other": text}``) or a mapping
    of the locale's plural categories to texts, ``other`` included. The
    locale is stored normalized (``pt_BR`` -> ``pt-br``). Running bots see
    the change once the bot's cache revision is bumped (a reload).

    Raises ``TranslationInvalidError`` (nothing written) with paths
    ``locale``, ``key``, ``forms`` and ``forms.<category>``.
    """
    problems: dict[str, list[str]] = {}
    if found := locale_problems(locale):
        problems["locale"] = found
    if found := key_problems(key):
        problems["key"] = found
    tag = locale_normalize(locale)
    problems.update(_forms_problems_at("forms", forms, locale=tag))
    if problems or tag is None:
        raise TranslationInvalidError(problems)

    translation, _created = Translation.objects.update_or_create(
        bot_id=bot_id, locale=tag, key=key, defaults={"forms": forms_from_input(forms)}
    )

    return translation


def translation_delete(*, bot_id: int, locale: str, key: str) -> bool:
    """Delete the text of ``key`` in ``locale``; tell whether there was one.

    A malformed locale has nothing stored under it: False. Nothing is
    raised beyond database errors.
    """
    tag = locale_normalize(locale)
    if tag is None:
        return False

    deleted, _by_model = Translation.objects.filter(
        bot_id=bot_id, locale=tag, key=key
    ).delete()

    return deleted > 0


def translations_import(*, bot_id: int, data: ImportData, replace: bool = False) -> int:
    """Write many translations at once; return how many rows changed.

    ``data`` is ``{"en": {"key": "text" or {"one": ..., "other": ...}}}``,
    the format of ``translations_export``. Everything is checked before
    anything is written, then all is written in one transaction. A row
    whose forms are already as given is left alone and not counted, so
    importing the same data twice writes nothing the second time. With
    ``replace``, the bot's rows whose (locale, key) is not in ``data`` are
    deleted, so that the bot ends up with exactly ``data``.

    Raises ``TranslationInvalidError`` (nothing written) with paths
    ``<locale>``, ``<locale>.<key>`` and ``<locale>.<key>.<category>``.
    """
    rows = _import_rows(data)

    with transaction.atomic():
        existing = {
            (locale, key): (pk, forms)
            for pk, locale, key, forms in Translation.objects.select_for_update()
            .filter(bot_id=bot_id)
            .values_list("pk", "locale", "key", "forms")
        }
        now = timezone.now()
        changed = [
            Translation(
                bot_id=bot_id, locale=locale, key=key, forms=forms, text_changed_at=now
            )
            for (locale, key), forms in rows.items()
            if (locale, key) not in existing or existing[(locale, key)][1] != forms
        ]
        # Only rows whose forms differ are written, so each one's text did
        # change: text_changed_at moves with it.
        Translation.objects.bulk_create(
            changed,
            update_conflicts=True,
            unique_fields=["bot", "locale", "key"],
            update_fields=["forms", "text_changed_at", "updated_at"],
        )

        deleted = 0
        if replace:
            stale = [pk for row, (pk, _forms) in existing.items() if row not in rows]
            deleted, _by_model = Translation.objects.filter(pk__in=stale).delete()

    logger.info(
        "Translations of bot %s imported: %s rows written, %s deleted.",
        bot_id,
        len(changed),
        deleted,
    )

    return len(changed)
