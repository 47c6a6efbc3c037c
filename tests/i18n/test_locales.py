import pytest

from i18n.locales import (
    babel_locale,
    locale_fallback_chain,
    locale_negotiate,
    locale_normalize,
    telegram_language_code,
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("en", "en"),
        ("en-US", "en-us"),
        ("pt-br", "pt-br"),
        ("pt_BR", "pt-br"),
        ("zh-hans", "zh-hans"),
        ("zh-Hans-CN", "zh-hans-cn"),
        ("es-419", "es-419"),
        ("fil", "fil"),
        (" uk ", "uk"),
        ("de-DE-u-co-phonebk", "de-de"),
        ("en-x-private", "en"),
    ],
)
def test_locale_normalize_returns_lowercase_bcp47(code: str, expected: str) -> None:
    # given a language code as Telegram or staff send it
    # when it is normalized
    result = locale_normalize(code)

    # then it is a lowercase tag joined with hyphens
    assert result == expected


MALFORMED = ["", "x", "123", "en--", "en-", "-en", "en_", "e n", "english", "日本"]
OVERLONG = ["en-" + "a" * 9, "en" + "-abcdefgh" * 4]


@pytest.mark.parametrize("code", [None, 42, *MALFORMED, *OVERLONG])
def test_locale_normalize_rejects_missing_and_malformed(code: object) -> None:
    # given something that is not a language tag
    # when it is normalized
    result = locale_normalize(code)  # type: ignore[arg-type]

    # then there is no locale
    assert result is None


@pytest.mark.parametrize(
    ("locale", "default", "expected"),
    [
        ("pt-br", "en", ["pt-br", "pt", "en"]),
        ("zh-Hans-CN", "en", ["zh-hans-cn", "zh-hans", "zh", "en"]),
        ("en-US", "en", ["en-us", "en"]),
        ("en", "en", ["en"]),
        ("uk", "pt-br", ["uk", "pt-br", "pt"]),
        ("pt", "pt-br", ["pt", "pt-br"]),
        ("x", "en", ["en"]),
        ("x", "??", []),
    ],
)
def test_locale_fallback_chain_goes_from_specific_to_default(
    locale: str, default: str, expected: list[str]
) -> None:
    # given a locale and a bot's default locale
    # when the chain is built
    chain = locale_fallback_chain(locale, default=default)

    # then it lists each tag, its prefixes, then the default, without repeats
    assert chain == expected


@pytest.mark.parametrize(
    ("language_code", "available", "expected"),
    [
        # Exact and prefix matches, across case and separators.
        ("en", ["en", "uk"], "en"),
        ("en-US", ["en", "uk"], "en"),
        ("en-US", ["en-us", "en"], "en-us"),
        ("en-US", ["en-GB", "en-US"], "en-us"),
        ("pt-br", ["en", "pt", "pt-br"], "pt-br"),
        ("pt-br", ["en", "pt"], "pt"),
        ("pt_BR", ["en", "pt-BR"], "pt-br"),
        ("pt_BR", ["en", "pt_br"], "pt-br"),
        ("zh-hans", ["en", "zh-hans", "zh-hant"], "zh-hans"),
        ("zh-Hans-CN", ["en", "zh-hant", "zh-hans"], "zh-hans"),
        ("zh-Hans-CN", ["en", "zh"], "zh"),
        # A language-only user gets a regional variant only when the plain
        # language is not available.
        ("pt", ["en", "pt-br", "pt"], "pt"),
        ("pt", ["en", "pt-br"], "pt-br"),
        ("pt", ["en", "pt-pt", "pt-br"], "pt-pt"),
        ("pt-pt", ["en", "pt-br"], "pt-br"),
        ("zh-hant-tw", ["zh-hans", "zh-hant-hk"], "zh-hant-hk"),
        # Nothing of the user's language: the default.
        ("de", ["en", "uk"], "en"),
        ("en", [], "en"),
        ("en", ["uk", "pl"], "en"),
        # Missing or malformed: the default.
        (None, ["en", "uk"], "en"),
        ("", ["en", "uk"], "en"),
        ("x", ["en", "uk"], "en"),
        ("123", ["en", "uk"], "en"),
        ("en--", ["en", "uk"], "en"),
    ],
)
def test_locale_negotiate_picks_the_closest_available(
    language_code: str | None, available: list[str], expected: str
) -> None:
    # given the user's language code and the bot's locales, default en
    # when a locale is negotiated
    locale = locale_negotiate(language_code, available=available, default="en")

    # then the closest available locale, or the default, is chosen
    assert locale == expected


def test_locale_negotiate_normalizes_the_default() -> None:
    # given a bot whose default locale is spelled with an underscore
    # when a user without a usable language code is served
    locale = locale_negotiate(None, available=["pt_BR"], default="pt_BR")

    # then the default comes back in normalized form
    assert locale == "pt-br"


def test_locale_negotiate_ignores_malformed_available_entries() -> None:
    # given available locales with a malformed entry
    # when a user of that "language" is served
    locale = locale_negotiate("uk", available=["--", "x", "uk"], default="en")

    # then the valid entry matches
    assert locale == "uk"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "en"),
        ("pt-br", "pt_BR"),
        ("pt_BR", "pt_BR"),
        ("zh-hans", "zh_Hans"),
        ("zh-hans-cn", "zh_Hans_CN"),
        ("uk", "uk"),
        ("xx-yy", "en"),
        ("zz", "en"),
        ("malformed--", "en"),
    ],
)
def test_babel_locale_maps_tags_and_falls_back(locale: str, expected: str) -> None:
    # given a locale tag
    # when Babel's locale is looked up
    result = babel_locale(locale)

    # then it is Babel's spelling, or English when Babel does not know it
    assert str(result) == expected


@pytest.mark.parametrize(("locale", "expected"), [("pt-xx", "pt"), ("uk-abc", "uk")])
def test_babel_locale_falls_back_to_the_language(locale: str, expected: str) -> None:
    # given a region or subtag Babel has no data for
    # when Babel's locale is looked up
    result = babel_locale(locale)

    # then the language's locale is used
    assert str(result) == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "en"),
        ("en-us", "en"),
        ("pt-br", "pt"),
        ("zh-hans", "zh"),
        ("zh-Hans-CN", "zh"),
        ("uk", "uk"),
        ("fil", None),
        ("yue", None),
        ("x", None),
        ("", None),
    ],
)
def test_telegram_language_code_is_the_two_letter_language(
    locale: str, expected: str | None
) -> None:
    # given a locale
    # when the code for setMyCommands is derived
    code = telegram_language_code(locale)

    # then it is the ISO 639-1 language, or None when there is none
    assert code == expected
