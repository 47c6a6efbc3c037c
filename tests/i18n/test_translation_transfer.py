import json
from typing import Any

import pytest

from bots.models import Bot
from i18n.models import Translation
from i18n.services import TranslationInvalidError
from i18n.services import translations_import as rows_import
from i18n.transfer import (
    FILE_MAX_BYTES,
    TranslationChange,
    translations_export,
    translations_file_dump,
    translations_file_load,
    translations_import,
)

pytestmark = pytest.mark.django_db

# Texts that trip up files: separators, quotes, every kind of line break,
# spaces at the ends, non-ASCII, a spreadsheet formula and a BOM-like mark.
NASTY: dict[str, dict[str, Any]] = {
    "en": {
        "comma": "a, b; \"quoted\", 'single'",
        "lines": "one\ntwo\r\nthree\rfour\n",
        "spaces": "  padded\t ",
        "formula": "=SUM(A1:A2)",
        "files": {"one": '{count} file,\n"ok"', "other": "{count} files"},
        "explicit.other": {"other": "only other"},
    },
    "uk": {
        "comma": "а, б — «лапки» \u2028 ok",
        "files": {
            "one": "{count} файл",
            "few": "{count} файли",
            "many": "{count} файлів",
            "other": "{count} файлу",
        },
    },
    "ar": {"comma": "مرحبا، عالم \ufeffمع علامة"},
    "zh-hans": {"emoji": "你好 👋🏽 e\u0301"},
}


def _rows(bot: Bot) -> list[tuple[Any, ...]]:
    return list(
        Translation.objects.filter(bot=bot)
        .order_by("locale", "key")
        .values_list("locale", "key", "forms", "text_changed_at", "updated_at")
    )


def _export(bot: Bot, file_format: str) -> bytes:
    return translations_file_dump(
        data=translations_export(bot=bot), file_format=file_format
    )


def _refused(bot: Bot, content: bytes, file_format: str) -> dict[str, list[str]]:
    before = _rows(bot)
    with pytest.raises(TranslationInvalidError) as caught:
        data = translations_file_load(
            content=content, file_format=file_format, locales=["en", "uk"]
        )
        translations_import(bot=bot, data=data, apply=True, locales=["en", "uk"])
    assert _rows(bot) == before

    return caught.value.fields


@pytest.fixture
def translated_bot(bot: Bot) -> Bot:
    rows_import(
        bot_id=bot.pk, data={"en": {"greeting": "Hi"}, "uk": {"greeting": "Привіт"}}
    )

    return bot


def test_json_export_has_the_documented_shape(bot: Bot) -> None:
    # given a plain text and a plural one
    files = {"other": "{count} files", "one": "{count} file"}
    rows_import(bot_id=bot.pk, data={"en": {"files": files, "hi": 'Hi, "you"é'}})

    # when it is exported as JSON
    content = _export(bot, "json")

    # then the file is sorted, indented, unescaped UTF-8 with a final newline
    assert (
        content
        == (
            "{\n"
            f'  "bot": "{bot.slug}",\n'
            '  "locales": {\n'
            '    "en": {\n'
            '      "files": {\n'
            '        "one": "{count} file",\n'
            '        "other": "{count} files"\n'
            "      },\n"
            '      "hi": "Hi, \\"you\\"é"\n'
            "    }\n"
            "  }\n"
            "}\n"
        ).encode()
    )


def test_csv_export_has_the_documented_shape(bot: Bot) -> None:
    # given a plain text with a comma and line break, and a plural one
    files = {"other": "{count} files", "one": "{count} file"}
    rows_import(bot_id=bot.pk, data={"en": {"files": files, "hi": 'Hi,\n"you"'}})

    # when it is exported as CSV
    content = _export(bot, "csv")

    # then one record per text, CRLF, quoted only where needed
    assert content == (
        b"key,locale,form,text\r\n"
        b"files,en,one,{count} file\r\n"
        b"files,en,other,{count} files\r\n"
        b'hi,en,,"Hi,\n""you"""\r\n'
    )


@pytest.mark.parametrize("file_format", ["json", "csv"])
def test_export_import_export_is_byte_identical(bot: Bot, file_format: str) -> None:
    # given a bot with nasty texts, exported
    rows_import(bot_id=bot.pk, data=NASTY)
    first = _export(bot, file_format)

    # when all its texts are deleted and the file is imported back
    Translation.objects.filter(bot=bot).delete()
    data = translations_file_load(content=first, file_format=file_format)
    report = translations_import(bot=bot, data=data, apply=True)

    # then every text is added and a new export gives the same bytes
    assert (len(report.added), len(report.changed), report.unchanged) == (10, 0, 0)
    assert _export(bot, file_format) == first
    assert (
        translations_export(bot=bot)["locales"]["en"]["lines"] == NASTY["en"]["lines"]
    )


@pytest.mark.parametrize("file_format", ["json", "csv"])
def test_reimporting_an_export_changes_nothing(bot: Bot, file_format: str) -> None:
    # given an exported bot
    rows_import(bot_id=bot.pk, data=NASTY)
    before = _rows(bot)
    content = _export(bot, file_format)

    # when its own file is imported
    data = translations_file_load(content=content, file_format=file_format)
    report = translations_import(bot=bot, data=data, apply=True)

    # then nothing is added or changed, and no row is written
    assert (report.added, report.changed, report.unchanged) == ([], [], 10)
    assert _rows(bot) == before


def test_preview_reports_changes_and_writes_nothing(translated_bot: Bot) -> None:
    # given a bot with a greeting in English and Ukrainian
    bot = translated_bot
    before = _rows(bot)
    data = {
        "bot": "elsewhere",
        "locales": {
            "en": {"greeting": "Hello", "bye": "Bye"},
            "uk": {"greeting": "Привіт"},
        },
    }

    # when the data is previewed
    report = translations_import(bot=bot, data=data, apply=False)

    # then the report says what would change, and nothing did
    assert report.added == [TranslationChange("en", "bye", None, {"other": "Bye"})]
    assert report.changed == [
        TranslationChange("en", "greeting", {"other": "Hi"}, {"other": "Hello"})
    ]
    assert (report.unchanged, report.applied, report.source_bot) == (
        1,
        False,
        "elsewhere",
    )
    assert _rows(bot) == before

    # when it is applied
    applied = translations_import(bot=bot, data=data, apply=True)

    # then the texts are written, and the rows left out are kept
    assert applied.applied is True
    assert translations_export(bot=bot)["locales"] == {
        "en": {"bye": "Bye", "greeting": "Hello"},
        "uk": {"greeting": "Привіт"},
    }


def test_csv_accepts_a_bom_a_blank_last_line_and_an_explicit_other(bot: Bot) -> None:
    # given a CSV as a spreadsheet saves it
    content = "\ufeffkey,locale,form,text\r\nhi,en,other,Hi\r\n\r\n".encode()

    # when it is read
    data = translations_file_load(content=content, file_format="csv")

    # then the text is plain
    assert data == {"locales": {"en": {"hi": {"other": "Hi"}}}}


@pytest.mark.parametrize(
    ("content", "fields"),
    [
        (
            b"key,lang,text\r\nhi,en,Hi\r\n",
            {
                "row 1": [
                    "The first row must be key,locale,form,text, not key,lang,text."
                ]
            },
        ),
        (
            b"key,locale,form,text\r\nhi,en,Hi\r\nbye,en,,Bye,extra\r\n",
            {
                "row 2": ["Give 4 columns (key, locale, form, text), not 3."],
                "row 3": ["Give 4 columns (key, locale, form, text), not 5."],
            },
        ),
        (
            b"key,locale,form,text\r\nhi,de,,Hallo\r\nhi,english!,,Hi\r\n",
            {
                "row 2": [
                    "Not a locale of this bot (en, uk); add it to the spec first."
                ],
                "row 3": [
                    "Not a locale; use a BCP 47 tag such as uk, pt-br or zh-hans."
                ],
            },
        ),
        (
            b"key,locale,form,text\r\nfiles,en,few,x\r\nfiles,en,other,y\r\n",
            {"row 2": ["Not a plural category of this locale; use one, other."]},
        ),
        (
            b"key,locale,form,text\r\nhi,en,,\r\nbad key,en,,x\r\n",
            {
                "row 2": ["The text is empty."],
                "row 3": ["Not a key; use dotted identifiers such as menu.title."],
            },
        ),
        (
            b"key,locale,form,text\r\nhi,en,,a\r\nhi,en,,b\r\nf,uk,one,x\r\nf,uk,,y\r\n",
            {
                "row 3": ["The same key, locale and form as row 2."],
                "row 5": [
                    "Row 4 has the same key and locale: give one row with an empty "
                    "form for a plain text, or one row per plural form."
                ],
            },
        ),
        (
            b"key,locale,form,text\r\nf,uk,one,x\r\nf,uk,few,y\r\n",
            {"row 2": ["The 'other' form is required."]},
        ),
        (
            b'key,locale,form,text\r\nhi,en,,"open\r\n',
            {"row 2": ["Not valid CSV: unexpected end of data."]},
        ),
        (b"", {"file": ["The file is empty."]}),
        (
            b"key,locale,form,text\r\nhi,en,,\xff\xfe\r\n",
            {"file": ["The file is not UTF-8 (byte 30)."]},
        ),
    ],
)
def test_bad_csv_is_refused_with_its_rows(
    translated_bot: Bot, content: bytes, fields: dict[str, list[str]]
) -> None:
    assert _refused(translated_bot, content, "csv") == fields


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ('{"bot": "x", "locales": {"en": {"hi": "Hi"},}}', None),
        ("[]", {"": ["Give an object with the bot and its locales."]}),
        (
            '{"bot": 1, "extra": true, "locales": []}',
            {
                "extra": ["Unknown field; use bot and locales."],
                "bot": ["The bot's slug must be a string."],
                "locales": ["Give an object of locales to keys and texts."],
            },
        ),
        (
            json.dumps(
                {
                    "locales": {
                        "de": {"hi": "Hallo"},
                        "en": {"hi": "", "files": {"one": "1", "few": "2"}},
                        "uk": {"bad key": "x", "nul": "a\u0000b", "long": "x" * 4097},
                    }
                }
            ),
            {
                "locales.de": [
                    "Not a locale of this bot (en, uk); add it to the spec first."
                ],
                "locales.en.hi": ["The text is empty."],
                "locales.en.files": ["The 'other' form is required."],
                "locales.en.files.few": [
                    "Not a plural category of this locale; use one, other."
                ],
                "locales.uk.bad key": [
                    "Not a key; use dotted identifiers such as menu.title."
                ],
                "locales.uk.nul": [
                    "The text holds a NUL character or an unpaired surrogate."
                ],
                "locales.uk.long": [
                    "The text is 4097 characters long; Telegram allows 4096."
                ],
            },
        ),
        (
            '{"locales": {"en": {"hi": "a"}, "EN": {"hi": "b"},'
            ' "uk": {"hi": "\\ud800"}}}',
            {
                "locales.EN": ["The same locale as en."],
                "locales.uk.hi": [
                    "The text holds a NUL character or an unpaired surrogate."
                ],
            },
        ),
        (
            '{"locales": {"en": {"hi": "a", "hi": "b"}}}',
            {"file": ["The name hi appears twice."]},
        ),
        ("[" * 100_000, {"file": ["The JSON is nested too deeply."]}),
    ],
)
def test_bad_json_is_refused_with_its_paths(
    translated_bot: Bot, data: str, fields: dict[str, list[str]] | None
) -> None:
    expected = fields or {
        "file": [
            "Not valid JSON: Expecting property name enclosed in double quotes "
            "(line 1, column 45)."
        ]
    }
    assert _refused(translated_bot, data.encode(), "json") == expected


@pytest.mark.parametrize("file_format", ["json", "csv"])
def test_too_large_a_file_is_refused(translated_bot: Bot, file_format: str) -> None:
    content = b" " * (FILE_MAX_BYTES + 1)

    assert _refused(translated_bot, content, file_format) == {
        "file": ["The file is larger than 5 MB."]
    }


def test_one_bad_row_keeps_the_good_ones_from_being_written(
    translated_bot: Bot,
) -> None:
    content = (
        "key,locale,form,text\r\ngreeting,en,,Hello\r\nnew,uk,,Нове\r\nfiles,en,two,x\r\n"
    ).encode()

    assert _refused(translated_bot, content, "csv") == {
        "row 4": ["Not a plural category of this locale; use one, other."]
    }


def test_unknown_format_is_refused(translated_bot: Bot) -> None:
    assert _refused(translated_bot, b"", "xml") == {
        "format": ["Choose the format: json, csv."]
    }
