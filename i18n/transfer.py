"""A bot's translations as a file: JSON or CSV, exported and imported.

JSON is ``{"bot": slug, "locales": {locale: {key: text or forms}}}``, where
a text with only the ``other`` form is a plain string and plural forms are
an object in CLDR order; two spaces of indent, UTF-8 (not escaped), one
final newline.

CSV (RFC 4180, UTF-8, CRLF between records) has the header
``key,locale,form,text`` and one record per text: ``form`` is empty for a
plain text, or the CLDR category of one plural form. Records come sorted
by locale, key and CLDR order of the forms; a field is quoted only when it
holds a comma, a quote or a line break. Row numbers in errors count
records, the header being row 1, as a spreadsheet shows them.

Exporting, importing the file and exporting again gives the same bytes.
An import adds and changes texts; it never deletes one.
"""

import csv
import io
import json
import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction
from django.utils.translation import gettext as _

from i18n.locales import locale_normalize
from i18n.models import Translation
from i18n.plurals import PLURAL_CATEGORIES, PLURAL_OTHER, plural_categories
from i18n.selectors import forms_ordered
from i18n.selectors import translations_export as translations_by_locale
from i18n.services import TranslationInvalidError
from i18n.services import translations_import as rows_write
from i18n.validation import (
    forms_from_input,
    forms_problems,
    key_problems,
    locale_problems,
    text_problems,
)

logger = logging.getLogger(__name__)

FORMAT_JSON = "json"
FORMAT_CSV = "csv"
FORMATS = (FORMAT_JSON, FORMAT_CSV)
CONTENT_TYPES = {
    FORMAT_JSON: "application/json; charset=utf-8",
    FORMAT_CSV: "text/csv; charset=utf-8",
}
CSV_HEADER = ["key", "locale", "form", "text"]

# Far above a real bot (500 keys x 5 locales x 1 KB is 2.5 MB) and small
# enough to parse in one request.
FILE_MAX_BYTES = 5 * 1024 * 1024

# Excel and some editors start UTF-8 files with a byte order mark.
_BOM = "\ufeff"

Rows = dict[tuple[str, str], dict[str, str]]


class TransferBot(Protocol):
    """What the transfer needs of a bot: its id and its slug."""

    @property
    def pk(self) -> Any: ...

    @property
    def slug(self) -> str: ...


@dataclass(frozen=True)
class TranslationChange:
    locale: str
    key: str
    before: dict[str, str] | None
    after: dict[str, str]


@dataclass(frozen=True)
class TranslationImportReport:
    """What an import adds and changes; ``applied`` tells if it was written.

    ``unchanged`` counts the texts of the data that are already as given.
    """

    added: list[TranslationChange] = field(default_factory=list)
    changed: list[TranslationChange] = field(default_factory=list)
    unchanged: int = 0
    applied: bool = False
    source_bot: str | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed)


class _Problems:
    """Messages by path, in the order found."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, messages: list[str]) -> None:
        if messages:
            self.fields.setdefault(path, []).extend(messages)

    def raise_any(self) -> None:
        if self.fields:
            raise TranslationInvalidError(self.fields)


def _path(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _locale_check(
    code: object, *, locales: Collection[str] | None
) -> tuple[str | None, list[str]]:
    """Return the normalized tag, or None and why the code is refused."""
    if found := locale_problems(code):
        return None, found
    tag = locale_normalize(str(code))
    if tag is None:
        return None, locale_problems(None)
    if locales is not None and tag not in locales:
        message = _("Not a locale of this bot (%(locales)s); add it to the spec first.")
        return None, [message % {"locales": ", ".join(sorted(locales)) or "-"}]

    return tag, []


def _data_check(data: object, *, locales: Collection[str] | None) -> Rows:
    """Check the export's shape and texts; return ``{(locale, key): forms}``."""
    if not isinstance(data, Mapping):
        message = _("Give an object with the bot and its locales.")
        raise TranslationInvalidError({"": [message]})

    problems = _Problems()
    for name in data:
        if name not in ("bot", "locales"):
            problems.add(str(name), [_("Unknown field; use bot and locales.")])
    if "bot" in data and not isinstance(data["bot"], str):
        problems.add("bot", [_("The bot's slug must be a string.")])
    by_locale = data.get("locales")
    if not isinstance(by_locale, Mapping):
        problems.add("locales", [_("Give an object of locales to keys and texts.")])
        raise TranslationInvalidError(problems.fields)

    rows: Rows = {}
    seen: dict[str, str] = {}
    for code, entries in by_locale.items():
        path = _path("locales", str(code))
        tag, found = _locale_check(code, locales=locales)
        problems.add(path, found)
        if tag is not None and tag in seen:
            other = seen[tag]
            problems.add(path, [_("The same locale as %(other)s.") % {"other": other}])
        elif tag is not None:
            seen[tag] = str(code)
        if not isinstance(entries, Mapping):
            problems.add(path, [_("Give an object of keys to texts.")])
            continue

        for key, forms in entries.items():
            entry = _path(path, str(key))
            found_key = key_problems(key)
            problems.add(entry, found_key)
            # An invalid locale still has its texts checked, against every
            # CLDR category.
            found_forms = forms_problems(forms, locale=tag)
            for category, messages in found_forms.items():
                problems.add(_path(entry, category), messages)
            if tag is not None and not found_key and not found_forms:
                rows[(tag, key)] = forms_from_input(forms)
    problems.raise_any()

    return rows


def _csv_records(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    number = 0
    while True:
        number += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message = _("Not valid CSV: %(error)s.") % {"error": exc}
            raise TranslationInvalidError({f"row {number}": [message]}) from None
        yield number, record


def _csv_row_check(
    record: list[str], *, locales: Collection[str] | None
) -> tuple[tuple[str, str, str, str] | None, list[str]]:
    if len(record) != len(CSV_HEADER):
        message = _("Give %(expected)s columns (%(header)s), not %(found)s.")
        found = {
            "expected": len(CSV_HEADER),
            "header": ", ".join(CSV_HEADER),
            "found": len(record),
        }
        return None, [message % found]

    key, code, form, text = record
    tag, problems = _locale_check(code, locales=locales)
    problems += key_problems(key)
    allowed = plural_categories(tag) if tag else PLURAL_CATEGORIES
    if form and form not in allowed:
        message = _("Not a plural category of this locale; use %(allowed)s.")
        problems.append(message % {"allowed": ", ".join(allowed)})
    problems += text_problems(text)
    if problems or tag is None:
        return None, problems

    return (key, tag, form, text), []


def _csv_read(text: str, *, locales: Collection[str] | None) -> dict[str, Any]:
    problems = _Problems()
    records = _csv_records(text)
    first = next(records, None)
    if first is None:
        raise TranslationInvalidError({"file": [_("The file is empty.")]})
    if first[1] != CSV_HEADER:
        message = _("The first row must be %(header)s, not %(found)s.")
        header = {"header": ",".join(CSV_HEADER), "found": ",".join(first[1])}
        raise TranslationInvalidError({"row 1": [message % header]})

    # (locale, key) -> form -> (row number, text)
    groups: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
    conflicts: set[tuple[str, str]] = set()
    for number, record in records:
        # A blank line (a spreadsheet's trailing one) is no record.
        if not record:
            continue
        row = f"row {number}"
        checked, messages = _csv_row_check(record, locales=locales)
        problems.add(row, messages)
        if checked is None:
            continue

        key, tag, form, text = checked
        forms = groups.setdefault((tag, key), {})
        if form in forms:
            message = _("The same key, locale and form as row %(row)s.")
            problems.add(row, [message % {"row": forms[form][0]}])
            conflicts.add((tag, key))
        elif forms and ("" in forms or not form):
            message = _(
                "Row %(row)s has the same key and locale: give one row with an "
                "empty form for a plain text, or one row per plural form."
            )
            problems.add(row, [message % {"row": min(n for n, _t in forms.values())}])
            conflicts.add((tag, key))
        else:
            forms[form] = (number, text)

    by_locale: dict[str, dict[str, str | dict[str, str]]] = {}
    for (tag, key), forms in groups.items():
        if (tag, key) in conflicts:
            continue
        if "" in forms:
            by_locale.setdefault(tag, {})[key] = forms[""][1]
            continue
        if PLURAL_OTHER not in forms:
            first_row = min(number for number, _text in forms.values())
            problems.add(f"row {first_row}", [_("The 'other' form is required.")])
            continue
        texts = {form: text for form, (_number, text) in forms.items()}
        by_locale.setdefault(tag, {})[key] = forms_ordered(texts)
    problems.raise_any()

    return {"locales": by_locale}


def _json_read(text: str) -> Any:
    def pairs_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json.loads would keep the last of two equal names without a word.
        unique = dict(pairs)
        if len(unique) == len(pairs):
            return unique
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                raise ValueError(_("The name %(name)s appears twice.") % {"name": name})
            seen.add(name)

        return unique

    try:
        return json.loads(text, object_pairs_hook=pairs_unique)
    except json.JSONDecodeError as exc:
        message = _("Not valid JSON: %(error)s (line %(line)s, column %(column)s).")
        found = {"error": exc.msg, "line": exc.lineno, "column": exc.colno}
        raise TranslationInvalidError({"file": [message % found]}) from None
    except ValueError as exc:
        raise TranslationInvalidError({"file": [str(exc)]}) from None
    except RecursionError:
        message = _("The JSON is nested too deeply.")
        raise TranslationInvalidError({"file": [message]}) from None


def translations_export(*, bot: TransferBot) -> dict[str, Any]:
    """Return the bot's translations as ``{"bot": slug, "locales": {...}}``.

    Locales and keys are sorted and plural forms are in CLDR order, so the
    same texts always give the same data. Nothing is raised beyond database
    errors.
    """
    return {"bot": bot.slug, "locales": translations_by_locale(bot_id=bot.pk)}


def translations_file_dump(*, data: Mapping[str, Any], file_format: str) -> bytes:
    """Return the bytes of an export (``translations_export``) as a file.

    Raises ``ValueError`` for a format other than ``json`` or ``csv``.
    """
    if file_format == FORMAT_JSON:
        return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()
    if file_format != FORMAT_CSV:
        raise ValueError(f"Unknown format: {file_format}")

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for locale, entries in sorted(data["locales"].items()):
        for key, forms in sorted(entries.items()):
            if isinstance(forms, str):
                writer.writerow([key, locale, "", forms])
                continue
            for category, text in forms_ordered(forms).items():
                writer.writerow([key, locale, category, text])

    return buffer.getvalue().encode()


def translations_file_load(
    *, content: bytes, file_format: str, locales: Collection[str] | None = None
) -> dict[str, Any]:
    """Read a translations file into the data ``translations_import`` takes.

    The whole file is checked (CSV rows, JSON paths under ``locales``);
    with ``locales``, a locale outside them is refused. Raises
    ``TranslationInvalidError`` whose ``fields`` map ``file``, ``row <n>``
    (CSV) or a JSON path (``locales.uk.files.few``) to messages.
    """
    if file_format not in FORMATS:
        message = _("Choose the format: %(formats)s.") % {"formats": ", ".join(FORMATS)}
        raise TranslationInvalidError({"format": [message]})
    if len(content) > FILE_MAX_BYTES:
        message = _("The file is larger than %(limit)s MB.")
        limit = FILE_MAX_BYTES // (1024 * 1024)
        raise TranslationInvalidError({"file": [message % {"limit": limit}]})
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = _("The file is not UTF-8 (byte %(offset)s).")
        offset = exc.start + 1
        raise TranslationInvalidError(
            {"file": [message % {"offset": offset}]}
        ) from None
    text = text.removeprefix(_BOM)

    if file_format == FORMAT_CSV:
        return _csv_read(text, locales=locales)

    data = _json_read(text)
    _data_check(data, locales=locales)

    return data


def translations_import(
    *,
    bot: TransferBot,
    data: Mapping[str, Any],
    apply: bool,
    locales: Collection[str] | None = None,
) -> TranslationImportReport:
    """Compare ``data`` (the shape of ``translations_export``) with the bot's
    texts and, with ``apply``, write what differs.

    Rows the data leaves out stay as they are. Everything is checked before
    anything is written, and all is written in one transaction; importing
    the same data twice changes nothing the second time. The bot's cache
    revision is not touched: the caller makes the change live. Raises
    ``TranslationInvalidError`` (nothing written) with JSON paths under
    ``locales``; with ``locales``, a locale outside them is refused.
    """
    rows = _data_check(data, locales=locales)
    source = data.get("bot")

    with transaction.atomic():
        existing = {
            (locale, key): forms
            for locale, key, forms in Translation.objects.select_for_update()
            .filter(bot_id=bot.pk)
            .values_list("locale", "key", "forms")
        }
        added: list[TranslationChange] = []
        changed: list[TranslationChange] = []
        for (locale, key), forms in sorted(rows.items()):
            before = existing.get((locale, key))
            change = TranslationChange(
                locale=locale, key=key, before=before, after=forms
            )
            if before is None:
                added.append(change)
            elif before != forms:
                changed.append(change)

        if apply and (added or changed):
            by_locale: dict[str, dict[str, dict[str, str]]] = {}
            for change in added + changed:
                by_locale.setdefault(change.locale, {})[change.key] = change.after
            rows_write(bot_id=bot.pk, data=by_locale)

    return TranslationImportReport(
        added=added,
        changed=changed,
        unchanged=len(rows) - len(added) - len(changed),
        applied=apply,
        source_bot=source if isinstance(source, str) else None,
    )
