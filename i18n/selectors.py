import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from botfactory.metrics import CACHE_REQUESTS
from i18n.models import Translation
from i18n.plurals import PLURAL_CATEGORIES, PLURAL_OTHER
from i18n.translator import BotTranslator

# Bots whose tables one process keeps; a table is small (a few hundred rows)
# and an evicted bot only costs one query on its next update.
TRANSLATOR_CACHE_SIZE = 1024

TranslationTableDict = dict[str, dict[str, dict[str, str]]]
TranslationsExport = dict[str, dict[str, str | dict[str, str]]]


class _CachedTable(NamedTuple):
    revision: int
    table: TranslationTableDict


class _TableCache:
    """A thread-safe LRU of one table per bot, tagged with its revision.

    Bots with identical tables (copies of one template) share one table
    object, so a large catalogue of such bots costs one table's memory.
    Tables are never changed once cached.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[int, _CachedTable] = OrderedDict()
        self._shared: OrderedDict[str, TranslationTableDict] = OrderedDict()
        self._lock = threading.Lock()

    def _shared_copy(self, table: TranslationTableDict) -> TranslationTableDict:
        digest = hashlib.sha256(
            json.dumps(table, sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        shared = self._shared.setdefault(digest, table)
        self._shared.move_to_end(digest)
        while len(self._shared) > self._size:
            self._shared.popitem(last=False)

        return shared

    def get(self, bot_id: int, revision: int) -> TranslationTableDict | None:
        with self._lock:
            entry = self._entries.get(bot_id)
            # Revisions only grow: a request that read the bot before a
            # reload may be served the newer table, never an older one.
            if entry is None or entry.revision < revision:
                return None
            self._entries.move_to_end(bot_id)

            return entry.table

    def put(self, bot_id: int, revision: int, table: TranslationTableDict) -> None:
        with self._lock:
            entry = self._entries.get(bot_id)
            if entry is not None and entry.revision > revision:
                return
            self._entries[bot_id] = _CachedTable(revision, self._shared_copy(table))
            self._entries.move_to_end(bot_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_tables = _TableCache(TRANSLATOR_CACHE_SIZE)


def forms_ordered(forms: Mapping[str, str]) -> dict[str, str]:
    """Return plural forms in CLDR order (``one`` before ``other``)."""
    # PostgreSQL's jsonb forgets the order keys were written in.
    order = {category: index for index, category in enumerate(PLURAL_CATEGORIES)}

    return dict(sorted(forms.items(), key=lambda item: order.get(item[0], 99)))


def translation_table_get(*, bot_id: int) -> TranslationTableDict:
    """Return the bot's translations as ``{locale: {key: {category: text}}}``.

    One query; an unknown bot has an empty table. Nothing is raised.
    """
    table: TranslationTableDict = {}
    rows = Translation.objects.filter(bot_id=bot_id).values_list(
        "locale", "key", "forms"
    )
    for locale, key, forms in rows:
        table.setdefault(locale, {})[key] = dict(forms)

    return table


def translator_get(
    *, bot_id: int, revision: int, locale: str, default_locale: str
) -> BotTranslator:
    """Return a translator for ``locale`` over the bot's table at ``revision``.

    The table is read once per bot and revision and kept in this process
    (an LRU of ``TRANSLATOR_CACHE_SIZE`` bots), so an edit shows once the
    bot's ``cache_revision`` is bumped, in every process on its next call.
    Nothing is raised beyond database errors.
    """
    table = _tables.get(bot_id, revision)
    CACHE_REQUESTS.labels(
        cache="translations", result="miss" if table is None else "hit"
    ).inc()
    if table is None:
        # Read outside the lock: a slow query for one bot must not hold up
        # the others. Two threads may both read; the result is the same.
        table = translation_table_get(bot_id=bot_id)
        _tables.put(bot_id, revision, table)

    return BotTranslator(locale=locale, default_locale=default_locale, table=table)


def translation_keys_get(*, bot_id: int) -> dict[str, set[str]]:
    """Return the keys each locale of the bot has: ``{locale: {key, ...}}``.

    Nothing is raised beyond database errors.
    """
    keys: dict[str, set[str]] = {}
    rows = Translation.objects.filter(bot_id=bot_id).values_list("locale", "key")
    for locale, key in rows:
        keys.setdefault(locale, set()).add(key)

    return keys


def translation_lengths_get(*, bot_id: int) -> dict[str, dict[str, int]]:
    """Return each key's longest text per locale, in UTF-16 code units.

    ``{locale: {key: length}}``, the longest over the key's plural forms,
    counted as Telegram counts a message's length. Nothing is raised beyond
    database errors.
    """
    lengths: dict[str, dict[str, int]] = {}
    rows = Translation.objects.filter(bot_id=bot_id).values_list(
        "locale", "key", "forms"
    )
    for locale, key, forms in rows:
        texts = forms.values() if isinstance(forms, dict) else ()
        longest = max(
            (len(str(text).encode("utf-16-le")) // 2 for text in texts), default=0
        )
        lengths.setdefault(locale, {})[key] = longest

    return lengths


def translation_locales_list(*, bot_id: int) -> list[str]:
    """Return the locales the bot has translations in, sorted.

    Nothing is raised beyond database errors.
    """
    locales = (
        Translation.objects.filter(bot_id=bot_id)
        .order_by("locale")
        .values_list("locale", flat=True)
        .distinct()
    )

    return list(locales)


def translations_export(*, bot_id: int) -> TranslationsExport:
    """Return the bot's translations in the format ``translations_import`` reads.

    ``{"en": {"greeting": "Hi", "files": {"one": "...", "other": "..."}}}``:
    a text with only the ``other`` form is written as a plain string.
    Locales and keys are sorted, so two exports of the same data are equal
    as text too. Nothing is raised beyond database errors.
    """
    exported: TranslationsExport = {}
    rows = (
        Translation.objects.filter(bot_id=bot_id)
        .order_by("locale", "key")
        .values_list("locale", "key", "forms")
    )
    for locale, key, forms in rows:
        plain = set(forms) == {PLURAL_OTHER}
        text = forms[PLURAL_OTHER] if plain else forms_ordered(forms)
        exported.setdefault(locale, {})[key] = text

    return exported


class CellState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    # The source locale's text changed after this translation last did.
    OUTDATED = "outdated"


@dataclass(frozen=True)
class TranslationCell:
    """One key in one locale; ``forms`` is None when there is no text.

    A missing text that a built-in text stands in for is ``ok`` with
    ``is_builtin``.
    """

    locale: str
    forms: dict[str, str] | None
    state: CellState
    is_builtin: bool = False

    @property
    def is_plain(self) -> bool:
        return self.forms is not None and set(self.forms) == {PLURAL_OTHER}


@dataclass(frozen=True)
class TranslationGridRow:
    key: str
    cells: list[TranslationCell]
    is_used: bool

    @property
    def has_problems(self) -> bool:
        return any(cell.state != CellState.OK for cell in self.cells)


@dataclass(frozen=True)
class TranslationGrid:
    """A bot's translations as a table: a row per key, a column per locale.

    ``counts`` holds, per locale, how many cells are in each state, over
    every row (also those a filter left out).
    """

    source_locale: str
    locales: list[str]
    rows: list[TranslationGridRow]
    counts: dict[str, dict[CellState, int]]


def _cell_state(
    changed_at: datetime | None, source_changed_at: datetime | None, *, is_source: bool
) -> CellState:
    if changed_at is None:
        return CellState.MISSING
    if is_source or source_changed_at is None:
        return CellState.OK

    return CellState.OUTDATED if source_changed_at > changed_at else CellState.OK


def translation_grid_get(
    *,
    bot_id: int,
    source_locale: str,
    locales: Sequence[str] = (),
    keys: Iterable[str] = (),
    builtin: Callable[[str, str], bool] | None = None,
    only_problems: bool = False,
) -> TranslationGrid:
    """Return the bot's translations as a table with each cell's state.

    Columns are ``source_locale``, then ``locales``, then any other locale
    the bot has texts in (sorted). Rows are the keys any locale has, plus
    ``keys`` (those the spec uses), sorted. A cell is ``missing`` without a
    text (unless ``builtin(key, locale)`` tells a built-in text stands in),
    ``outdated`` when the source locale's text changed after it, else
    ``ok``. ``only_problems`` keeps the rows with a missing or outdated
    cell. One query; nothing is raised beyond database errors.
    """
    stored: dict[tuple[str, str], tuple[dict[str, str], datetime]] = {}
    rows = Translation.objects.filter(bot_id=bot_id).values_list(
        "locale", "key", "forms", "text_changed_at"
    )
    for locale, key, forms, changed_at in rows:
        stored[(locale, key)] = (forms_ordered(forms), changed_at)

    columns = list(dict.fromkeys([source_locale, *locales]))
    columns += sorted({locale for locale, _key in stored} - set(columns))
    used = set(keys)
    counts = {locale: dict.fromkeys(CellState, 0) for locale in columns}
    grid_rows: list[TranslationGridRow] = []
    for key in sorted(used | {key for _locale, key in stored}):
        source = stored.get((source_locale, key))
        cells = []
        for locale in columns:
            entry = stored.get((locale, key))
            forms = entry[0] if entry else None
            state = _cell_state(
                entry[1] if entry else None,
                source[1] if source else None,
                is_source=locale == source_locale,
            )
            is_builtin = (
                state == CellState.MISSING
                and builtin is not None
                and builtin(key, locale)
            )
            if is_builtin:
                state = CellState.OK
            counts[locale][state] += 1
            cells.append(TranslationCell(locale, forms, state, is_builtin))
        row = TranslationGridRow(key=key, cells=cells, is_used=key in used)
        if row.has_problems or not only_problems:
            grid_rows.append(row)

    return TranslationGrid(
        source_locale=source_locale, locales=columns, rows=grid_rows, counts=counts
    )
