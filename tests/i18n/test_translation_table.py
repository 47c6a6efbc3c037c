import importlib
from datetime import datetime, timedelta

import pytest
from django.apps import apps

from bots.models import Bot
from i18n.models import Translation
from i18n.selectors import CellState, translation_grid_get
from i18n.services import translation_set, translations_import

pytestmark = pytest.mark.django_db

OK, MISSING, OUTDATED = CellState.OK, CellState.MISSING, CellState.OUTDATED


def _states(bot: Bot) -> dict[str, list[tuple[str, CellState]]]:
    grid = translation_grid_get(bot_id=bot.pk, source_locale="en")

    return {
        row.key: [(cell.locale, cell.state) for cell in row.cells] for row in grid.rows
    }


def _changed_at(bot: Bot, locale: str, key: str) -> datetime:
    return Translation.objects.get(bot=bot, locale=locale, key=key).text_changed_at


def _age(bot: Bot, locale: str, key: str) -> None:
    """Move a row's last text change an hour back, as if written long ago."""
    row = Translation.objects.filter(bot=bot, locale=locale, key=key)
    changed_at = row.get().text_changed_at
    row.update(text_changed_at=changed_at - timedelta(hours=1))


def test_grid_gives_each_cell_its_state_and_text(bot: Bot) -> None:
    # given English texts, a Ukrainian one that predates its source's last
    # change, and a spec key nobody has translated
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    translation_set(
        bot_id=bot.pk, locale="en", key="files", forms={"one": "1", "other": "n"}
    )
    translation_set(bot_id=bot.pk, locale="uk", key="greeting", forms="Привіт")
    translation_set(bot_id=bot.pk, locale="uk", key="files", forms="файли")
    _age(bot, "uk", "files")
    translation_set(bot_id=bot.pk, locale="de", key="only.de", forms="Nur")

    # when the grid is read with the spec's locales and keys
    grid = translation_grid_get(
        bot_id=bot.pk,
        source_locale="en",
        locales=["en", "uk", "pt-br"],
        keys=["greeting", "menu.title"],
    )

    # then the columns are the source, the spec's, then the others
    assert grid.locales == ["en", "uk", "pt-br", "de"]
    states = {
        row.key: [(cell.locale, cell.state) for cell in row.cells] for row in grid.rows
    }
    assert states == {
        "files": [("en", OK), ("uk", OUTDATED), ("pt-br", MISSING), ("de", MISSING)],
        "greeting": [("en", OK), ("uk", OK), ("pt-br", MISSING), ("de", MISSING)],
        "menu.title": [
            ("en", MISSING),
            ("uk", MISSING),
            ("pt-br", MISSING),
            ("de", MISSING),
        ],
        "only.de": [("en", MISSING), ("uk", MISSING), ("pt-br", MISSING), ("de", OK)],
    }
    files = grid.rows[0]
    assert [cell.forms for cell in files.cells] == [
        {"one": "1", "other": "n"},
        {"other": "файли"},
        None,
        None,
    ]
    assert [row.is_used for row in grid.rows] == [False, True, True, False]
    assert grid.counts == {
        "en": {OK: 2, MISSING: 2, OUTDATED: 0},
        "uk": {OK: 1, MISSING: 2, OUTDATED: 1},
        "pt-br": {OK: 0, MISSING: 4, OUTDATED: 0},
        "de": {OK: 1, MISSING: 3, OUTDATED: 0},
    }


def test_grid_filter_keeps_rows_with_a_problem_and_counts_all(bot: Bot) -> None:
    # given one complete key and one missing in Ukrainian
    for key in ("done", "todo"):
        translation_set(bot_id=bot.pk, locale="en", key=key, forms="x")
    translation_set(bot_id=bot.pk, locale="uk", key="done", forms="y")

    # when only the problems are asked for
    grid = translation_grid_get(bot_id=bot.pk, source_locale="en", only_problems=True)

    # then only the incomplete row is left, and the counts cover both
    assert [row.key for row in grid.rows] == ["todo"]
    assert grid.counts["uk"] == {OK: 1, MISSING: 1, OUTDATED: 0}


def test_builtin_text_stands_in_for_a_missing_one(bot: Bot) -> None:
    # given a key overridden in English only
    translation_set(bot_id=bot.pk, locale="en", key="bf.back", forms="Back!")

    # when the grid knows the key has a built-in text
    grid = translation_grid_get(
        bot_id=bot.pk,
        source_locale="en",
        locales=["uk"],
        builtin=lambda key, locale: key == "bf.back",
    )

    # then the Ukrainian cell is ok through the built-in text
    [row] = grid.rows
    assert [(c.locale, c.state, c.is_builtin) for c in row.cells] == [
        ("en", OK, False),
        ("uk", OK, True),
    ]


def test_source_change_outdates_and_retranslating_clears(bot: Bot) -> None:
    # given a source text and its translation, written an hour ago
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    translation_set(bot_id=bot.pk, locale="uk", key="greeting", forms="Привіт")
    _age(bot, "en", "greeting")
    _age(bot, "uk", "greeting")
    assert _states(bot)["greeting"] == [("en", OK), ("uk", OK)]

    # when the source text changes
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hello")

    # then the translation is outdated
    assert _states(bot)["greeting"] == [("en", OK), ("uk", OUTDATED)]

    # when it is translated again
    translation_set(bot_id=bot.pk, locale="uk", key="greeting", forms="Вітаю")

    # then it is ok again
    assert _states(bot)["greeting"] == [("en", OK), ("uk", OK)]


def test_saving_the_same_source_text_outdates_nothing(bot: Bot) -> None:
    # given a source with plural forms and its translation, an hour old
    forms = {"one": "{count} file", "other": "{count} files"}
    translation_set(bot_id=bot.pk, locale="en", key="files", forms=forms)
    translation_set(bot_id=bot.pk, locale="uk", key="files", forms="файли")
    _age(bot, "en", "files")
    _age(bot, "uk", "files")
    before = _changed_at(bot, "en", "files")

    # when the same texts are saved again, through each write path
    translation_set(bot_id=bot.pk, locale="en", key="files", forms=dict(forms))
    translations_import(bot_id=bot.pk, data={"en": {"files": forms}})
    row = Translation.objects.get(bot=bot, locale="en", key="files")
    row.forms = {"other": "{count} files", "one": "{count} file"}
    row.save()

    # then the source's text time stands and nothing is outdated
    assert _changed_at(bot, "en", "files") == before
    assert _states(bot)["files"] == [("en", OK), ("uk", OK)]


def test_model_save_moves_text_time_only_when_forms_change(bot: Bot) -> None:
    # given an hour-old translation
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    _age(bot, "en", "greeting")
    old = _changed_at(bot, "en", "greeting")

    # when the admin saves it with a new text, naming the fields it writes
    row = Translation.objects.get(bot=bot, locale="en", key="greeting")
    row.forms = {"other": "Hello"}
    row.save(update_fields=["forms"])

    # then its text time moved forward
    changed = _changed_at(bot, "en", "greeting")
    assert changed > old
    assert Translation.objects.get(pk=row.pk).forms == {"other": "Hello"}


def test_bulk_import_moves_text_time_of_changed_rows_only(bot: Bot) -> None:
    # given two hour-old texts
    translation_set(bot_id=bot.pk, locale="en", key="a", forms="A")
    translation_set(bot_id=bot.pk, locale="en", key="b", forms="B")
    _age(bot, "en", "a")
    _age(bot, "en", "b")
    kept = _changed_at(bot, "en", "a")
    old_b = _changed_at(bot, "en", "b")

    # when an import keeps one and changes the other
    translations_import(bot_id=bot.pk, data={"en": {"a": "A", "b": "B2"}})

    # then only the changed one has a new text time
    assert _changed_at(bot, "en", "a") == kept
    assert _changed_at(bot, "en", "b") > old_b


def test_migration_fills_text_time_from_the_last_save(bot: Bot) -> None:
    # given rows whose text time differs from their last save
    translation_set(bot_id=bot.pk, locale="en", key="greeting", forms="Hi")
    row = Translation.objects.filter(bot=bot)
    row.update(text_changed_at=row.get().updated_at + timedelta(days=3))
    migration = importlib.import_module(
        "i18n.migrations.0002_translation_text_changed_at"
    )

    # when the migration's fill runs
    migration.text_changed_at_fill(apps, None)

    # then the text time is the last save
    saved = row.get()
    assert saved.text_changed_at == saved.updated_at
