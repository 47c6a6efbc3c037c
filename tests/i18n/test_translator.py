from i18n.translator import BotTranslator, TranslationTable

TABLE: TranslationTable = {
    "en": {
        "greeting": {"other": "Hello, {name}!"},
        "files": {"one": "{count} file", "other": "{count} files"},
        "only_default": {"other": "Only in English"},
    },
    "uk": {
        "greeting": {"other": "Привіт, {name}!"},
        "files": {
            "one": "{count} файл",
            "few": "{count} файли",
            "many": "{count} файлів",
            "other": "{count} файлу",
        },
        "apples": {"one": "{count} яблуко", "other": "{count} яблук"},
    },
    "pt": {"greeting": {"other": "Olá, {name}!"}},
    "pt-br": {"files": {"one": "{count} arquivo", "other": "{count} arquivos"}},
    "odd": {"only_one": {"few": "few form"}},
}


def test_translator_prefers_the_users_locale() -> None:
    # given a Ukrainian user of an English bot
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when a key both locales have is asked for
    pattern = translator.pattern("greeting")

    # then the Ukrainian pattern is returned, placeholders untouched
    assert pattern == "Привіт, {name}!"
    assert translator.locale == "uk"
    assert translator.chain == ("uk", "en")


def test_translator_falls_back_to_the_default_locale() -> None:
    # given a Ukrainian user and a key only the default locale has
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when it is asked for
    pattern = translator.pattern("only_default")

    # then the English pattern is returned
    assert pattern == "Only in English"


def test_translator_falls_back_through_the_language() -> None:
    # given a Brazilian user and keys in pt-br, pt and en
    translator = BotTranslator(locale="pt_BR", default_locale="en", table=TABLE)

    # when keys present at each level are asked for
    files = translator.pattern("files", 2)
    greeting = translator.pattern("greeting")
    only_default = translator.pattern("only_default")

    # then each comes from the most specific locale that has it
    assert (files, greeting, only_default) == (
        "{count} arquivos",
        "Olá, {name}!",
        "Only in English",
    )
    assert translator.chain == ("pt-br", "pt", "en")


def test_translator_picks_the_plural_form_of_the_count() -> None:
    # given a Ukrainian user
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when a plural key is asked for with several counts
    patterns = [translator.pattern("files", count) for count in (1, 3, 5, 21, 1.5)]

    # then each count gets its CLDR form
    assert patterns == [
        "{count} файл",
        "{count} файли",
        "{count} файлів",
        "{count} файл",
        "{count} файлу",
    ]


def test_translator_uses_the_rules_of_the_locale_that_has_the_key() -> None:
    # given a Ukrainian user and a plural key only English has
    table: TranslationTable = {
        "en": {"items": {"one": "{count} item", "other": "{count} items"}},
        "uk": {},
    }
    translator = BotTranslator(locale="uk", default_locale="en", table=table)

    # when the count is 21 ("one" in Ukrainian, "other" in English)
    pattern = translator.pattern("items", 21)

    # then English rules choose the form
    assert pattern == "{count} items"


def test_translator_falls_back_to_other_when_a_form_is_missing() -> None:
    # given a Ukrainian key with only "one" and "other"
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when counts of the missing "few" and "many" forms are asked for
    patterns = [translator.pattern("apples", count) for count in (1, 2, 5)]

    # then "other" stands in for them
    assert patterns == ["{count} яблуко", "{count} яблук", "{count} яблук"]


def test_translator_without_a_count_picks_other() -> None:
    # given a plural key
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when no count is given
    pattern = translator.pattern("files")

    # then the "other" form is returned
    assert pattern == "{count} файлу"


def test_translator_without_other_picks_the_only_form() -> None:
    # given a key whose only form is not "other"
    translator = BotTranslator(locale="odd", default_locale="en", table=TABLE)

    # when it is asked for with and without a count
    patterns = [translator.pattern("only_one"), translator.pattern("only_one", 1)]

    # then that form is returned
    assert patterns == ["few form", "few form"]


def test_translator_returns_none_for_a_key_missing_everywhere() -> None:
    # given a key no locale of the chain has
    translator = BotTranslator(locale="uk", default_locale="en", table=TABLE)

    # when it is asked for
    pattern = translator.pattern("missing.key", 3)

    # then there is no pattern
    assert pattern is None


def test_translator_for_a_malformed_locale_serves_the_default() -> None:
    # given a malformed user locale
    translator = BotTranslator(locale="--", default_locale="en", table=TABLE)

    # when a key is asked for
    pattern = translator.pattern("greeting")

    # then the default locale serves it
    assert pattern == "Hello, {name}!"
    assert translator.locale == "en"
