import threading
from collections import OrderedDict
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
    """A thread-safe LRU of one table per bot, tagged with its revision."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[int, _CachedTable] = OrderedDict()
        self._lock = threading.Lock()

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
            self._entries[bot_id] = _CachedTable(revision, table)
            self._entries.move_to_end(bot_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_tables = _TableCache(TRANSLATOR_CACHE_SIZE)


def _forms_ordered(forms: dict[str, str]) -> dict[str, str]:
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
        text = forms[PLURAL_OTHER] if plain else _forms_ordered(forms)
        exported.setdefault(locale, {})[key] = text

    return exported
