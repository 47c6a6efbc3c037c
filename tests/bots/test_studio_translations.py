import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from bots.models import AuditEntry, Bot, BotAccess
from i18n.models import Translation
from i18n.services import translations_import as rows_import
from i18n.transfer import translations_export, translations_file_dump
from tests.bots.test_admin import _change_data
from tests.factories import BotFactory

pytestmark = pytest.mark.django_db

SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en", "uk"],
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.again", "goto": "main"}]],
        }
    },
}


@pytest.fixture
def bot() -> Bot:
    """English complete; Ukrainian with one outdated text and one missing."""
    bot: Bot = BotFactory.create(draft_spec=SPEC)
    rows_import(
        bot_id=bot.pk,
        data={
            "en": {"main.text": "Welcome", "main.again": "Again"},
            "uk": {"main.text": "Вітаємо"},
        },
    )
    uk = Translation.objects.filter(bot=bot, locale="uk")
    uk.update(text_changed_at=uk.get().text_changed_at - timedelta(hours=1))

    return bot


def _client(bot: Bot, level: int | None) -> Client:
    user = get_user_model().objects.create_user(
        username=f"staff{level}", password="pw-123456", is_staff=True
    )
    if level is not None:
        BotAccess.objects.create(bot=bot, user=user, level=level)
    client = Client()
    client.force_login(user)

    return client


def _url(bot: Bot, page: str = "") -> str:
    return f"/admin/bots/bot/{bot.pk}/studio/translations/{page}"


def _rows(bot: Bot) -> list[tuple[Any, ...]]:
    return list(
        Translation.objects.filter(bot=bot)
        .order_by("locale", "key")
        .values_list("locale", "key", "forms", "text_changed_at")
    )


def _revision(bot: Bot) -> int:
    return Bot.objects.values_list("cache_revision", flat=True).get(pk=bot.pk)


def _cell_classes(html: str, locale: str, key: str) -> str:
    anchor = f"cell-{locale}-{key}".replace(".", "-")
    found = re.search(rf'<td id="{anchor}" class="([^"]*)"', html)
    assert found is not None

    return found.group(1)


def _upload(content: bytes, name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


@pytest.mark.parametrize(
    ("method", "page"),
    [("get", ""), ("post", ""), ("get", "export?format=json"), ("post", "import")],
)
def test_staff_without_access_get_403(bot: Bot, method: str, page: str) -> None:
    # given a member of staff with no access to the bot
    client = _client(bot, None)
    before = _rows(bot)

    # when they open or post to a translations URL
    response = getattr(client, method)(_url(bot, page))

    # then it is refused, and nothing changed
    assert response.status_code == 403
    assert _rows(bot) == before


def test_viewer_sees_states_but_cannot_edit(bot: Bot) -> None:
    # given a member of staff who may view the bot
    client = _client(bot, BotAccess.Level.VIEW)

    # when they open the page
    response = client.get(_url(bot))

    # then each cell carries its state, the counts are shown, no form is
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="translations-table"' in html
    assert _cell_classes(html, "en", "main.text") == "ok"
    assert _cell_classes(html, "uk", "main.text") == "outdated"
    assert _cell_classes(html, "uk", "main.again") == "missing"
    assert [(c["locale"], dict(c["counts"])) for c in response.context["columns"]] == [
        ("en", {"ok": 2, "missing": 0, "outdated": 0}),
        ("uk", {"ok": 0, "missing": 1, "outdated": 1}),
    ]
    assert 'id="export-json"' in html and 'id="export-csv"' in html
    assert 'id="import-form"' not in html
    assert 'class="cell-edit"' not in html


def test_viewer_may_not_change_a_cell(bot: Bot) -> None:
    client = _client(bot, BotAccess.Level.VIEW)
    before, revision = _rows(bot), _revision(bot)

    response = client.post(
        _url(bot), {"locale": "uk", "key": "main.again", "form_other": "Ще"}
    )

    assert response.status_code == 403
    assert (_rows(bot), _revision(bot)) == (before, revision)


def test_filter_keeps_only_rows_with_problems(bot: Bot) -> None:
    # given a complete key once Ukrainian is translated again
    rows_import(bot_id=bot.pk, data={"uk": {"main.text": "Вітаємо!"}})
    client = _client(bot, BotAccess.Level.VIEW)

    # when only problems are asked for
    response = client.get(_url(bot), {"only": "problems"})

    # then only the row with the missing cell is left
    assert [row["key"] for row in response.context["rows"]] == ["main.again"]


def test_editor_changes_a_cell_and_the_revision(bot: Bot) -> None:
    # given an editor
    client = _client(bot, BotAccess.Level.EDIT)
    revision = _revision(bot)

    # when they save the missing cell, with a browser's CRLF line break
    response = client.post(
        _url(bot), {"locale": "uk", "key": "main.again", "form_other": "Ще\r\nраз"}
    )

    # then the text is stored, live, and the page shows it as ok
    assert response.status_code == 302
    assert response["Location"] == _url(bot) + "#cell-uk-main-again"
    saved = Translation.objects.get(bot=bot, locale="uk", key="main.again")
    assert saved.forms == {"other": "Ще\nраз"}
    assert _revision(bot) == revision + 1
    html = client.get(_url(bot)).content.decode()
    assert _cell_classes(html, "uk", "main.again") == "ok"


def test_a_cell_saved_in_the_filtered_table_returns_to_it(bot: Bot) -> None:
    client = _client(bot, BotAccess.Level.EDIT)

    response = client.post(
        _url(bot) + "?only=problems",
        {"locale": "uk", "key": "main.again", "form_other": "Ще раз"},
    )

    assert response.status_code == 302
    assert response["Location"] == _url(bot) + "?only=problems#cell-uk-main-again"


def test_editor_sets_plural_forms(bot: Bot) -> None:
    client = _client(bot, BotAccess.Level.EDIT)

    response = client.post(
        _url(bot),
        {
            "locale": "uk",
            "key": "main.text",
            "form_one": "{count} файл",
            "form_few": "{count} файли",
            "form_many": "",
            "form_other": "{count} файлу",
        },
    )

    assert response.status_code == 302
    saved = Translation.objects.get(bot=bot, locale="uk", key="main.text")
    assert saved.forms == {
        "one": "{count} файл",
        "few": "{count} файли",
        "other": "{count} файлу",
    }


@pytest.mark.parametrize(
    ("post", "error"),
    [
        (
            {"locale": "uk", "key": "main.again", "form_other": "  "},
            "The text is empty.",
        ),
        (
            {"locale": "uk", "key": "main.again", "form_one": "x"},
            "The &#x27;other&#x27; form is required.",
        ),
        (
            {"locale": "en", "key": "main.again", "form_few": "x", "form_other": "y"},
            "Not a plural category of this locale; use one, other.",
        ),
        (
            {"locale": "de", "key": "main.again", "form_other": "x"},
            "Not a locale of this bot.",
        ),
        (
            {"locale": "uk", "key": "bad key", "form_other": "x"},
            "Not a key; use dotted identifiers such as menu.title.",
        ),
    ],
)
def test_bad_cell_edit_is_a_form_error(
    bot: Bot, post: dict[str, str], error: str
) -> None:
    # given an editor
    client = _client(bot, BotAccess.Level.EDIT)
    before, revision = _rows(bot), _revision(bot)

    # when they save a bad cell
    response = client.post(_url(bot), post)

    # then the page says why, and nothing changed
    assert response.status_code == 400
    assert error in response.content.decode()
    assert (_rows(bot), _revision(bot)) == (before, revision)


@pytest.mark.parametrize(
    ("file_format", "content_type"),
    [("json", "application/json; charset=utf-8"), ("csv", "text/csv; charset=utf-8")],
)
def test_viewer_downloads_an_export(
    bot: Bot, file_format: str, content_type: str
) -> None:
    client = _client(bot, BotAccess.Level.VIEW)

    response = client.get(_url(bot, "export"), {"format": file_format})

    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == (
        f'attachment; filename="{bot.slug}-translations.{file_format}"'
    )
    expected = translations_file_dump(
        data=translations_export(bot=bot), file_format=file_format
    )
    assert response.content == expected


def test_export_with_an_unknown_format_is_a_json_error(bot: Bot) -> None:
    client = _client(bot, BotAccess.Level.VIEW)

    response = client.get(_url(bot, "export"), {"format": "xml"})

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Give format=json or format=csv.",
        "code": "format_invalid",
    }


def test_import_previews_then_applies(bot: Bot) -> None:
    # given an editor and a CSV that changes one text and adds another
    client = _client(bot, BotAccess.Level.EDIT)
    before, revision = _rows(bot), _revision(bot)
    content = (
        "key,locale,form,text\r\n"
        "main.again,uk,,Ще раз\r\n"
        "main.text,en,,Welcome!\r\n"
        "main.text,uk,,Вітаємо\r\n"
    ).encode()

    # when they preview it
    preview = client.post(
        _url(bot, "import"),
        {"step": "preview", "format": "auto", "file": _upload(content, "t.csv")},
    )

    # then the counts are shown and nothing changed yet
    assert preview.status_code == 200
    report = preview.context["preview"]
    assert (len(report.added), len(report.changed), report.unchanged) == (1, 1, 1)
    assert (_rows(bot), _revision(bot)) == (before, revision)

    # when they apply it
    token = preview.context["preview_token"]
    applied = client.post(_url(bot, "import"), {"step": "apply", "token": token})

    # then the texts are written, live, audited; the outdated one is now
    # the Ukrainian that predates the new English text
    assert applied.status_code == 302
    assert translations_export(bot=bot)["locales"] == {
        "en": {"main.again": "Again", "main.text": "Welcome!"},
        "uk": {"main.again": "Ще раз", "main.text": "Вітаємо"},
    }
    assert _revision(bot) == revision + 1
    entry = AuditEntry.objects.get(bot=bot)
    assert (entry.action, entry.actor_label, entry.detail) == (
        "import",
        "staff2",
        {"translations": {"added": 1, "changed": 1}},
    )
    html = client.get(_url(bot)).content.decode()
    assert _cell_classes(html, "uk", "main.text") == "outdated"

    # when the same token is applied again
    again = client.post(_url(bot, "import"), {"step": "apply", "token": token})

    # then it has expired
    assert again.status_code == 400
    assert "The preview has expired; upload the file again." in again.content.decode()
    assert _revision(bot) == revision + 1


@pytest.mark.parametrize(
    ("name", "file_format", "content", "error"),
    [
        (
            "t.json",
            "auto",
            b'{"locales": {"de": {"x": "y"}}}',
            "<code>locales.de</code>: Not a locale of this bot (en, uk); add it to "
            "the spec first.",
        ),
        (
            "t.txt",
            "auto",
            b"key,locale,form,text\r\n",
            "<code>format</code>: Choose the format: the file name ends in neither.",
        ),
        (
            "t.txt",
            "csv",
            b"key,locale,text\r\n",
            "<code>row 1</code>: The first row must be key,locale,form,text, not "
            "key,locale,text.",
        ),
        ("t.csv", "csv", b"\xff", "<code>file</code>: The file is not UTF-8 (byte 1)."),
    ],
)
def test_bad_import_file_is_refused_with_nothing_changed(
    bot: Bot, name: str, file_format: str, content: bytes, error: str
) -> None:
    client = _client(bot, BotAccess.Level.EDIT)
    before, revision = _rows(bot), _revision(bot)

    response = client.post(
        _url(bot, "import"),
        {"step": "preview", "format": file_format, "file": _upload(content, name)},
    )

    assert response.status_code == 400
    assert error in response.content.decode()
    assert (_rows(bot), _revision(bot)) == (before, revision)
    assert AuditEntry.objects.filter(bot=bot).count() == 0


def test_viewer_may_not_import(bot: Bot) -> None:
    client = _client(bot, BotAccess.Level.VIEW)
    before = _rows(bot)

    response = client.post(
        _url(bot, "import"),
        {"step": "preview", "format": "csv", "file": _upload(b"x", "t.csv")},
    )

    assert response.status_code == 403
    assert _rows(bot) == before


def test_unknown_bot_is_404(admin_client: Client) -> None:
    response = admin_client.get("/admin/bots/bot/999999/studio/translations/")

    assert response.status_code == 404


def test_admin_inline_edit_of_the_source_outdates_its_translation(
    admin_client: Client, bot: Bot
) -> None:
    # given the bot re-translated, both locales written an hour ago
    rows_import(bot_id=bot.pk, data={"uk": {"main.text": "Вітаємо!"}})
    rows = Translation.objects.filter(bot=bot, key="main.text")
    for row in rows:
        rows.filter(pk=row.pk).update(
            text_changed_at=row.text_changed_at - timedelta(hours=1)
        )

    # when the bot's form is saved with its texts as they are
    admin_client.post(f"/admin/bots/bot/{bot.pk}/change/", _change_data(bot))

    # then nothing is outdated
    html = admin_client.get(_url(bot)).content.decode()
    assert _cell_classes(html, "uk", "main.text") == "ok"

    # when the English text is changed in the form's inline
    index = [t.key + t.locale for t in bot.translations.order_by("key", "locale")]
    changed = {f"translations-{index.index('main.texten')}-forms": '{"other": "Hey"}'}
    response = admin_client.post(
        f"/admin/bots/bot/{bot.pk}/change/", _change_data(bot, **changed)
    )

    # then the Ukrainian text is outdated
    assert response.status_code == 302
    html = admin_client.get(_url(bot)).content.decode()
    assert _cell_classes(html, "uk", "main.text") == "outdated"
