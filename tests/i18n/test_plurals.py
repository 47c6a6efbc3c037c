from decimal import Decimal

import pytest

from i18n.plurals import plural_categories, plural_category

UKRAINIAN = [
    (0, "many"),
    (1, "one"),
    (2, "few"),
    (3, "few"),
    (4, "few"),
    (5, "many"),
    (11, "many"),
    (12, "many"),
    (14, "many"),
    (20, "many"),
    (21, "one"),
    (22, "few"),
    (25, "many"),
    (101, "one"),
    (111, "many"),
    (1.5, "other"),
]
POLISH = [
    (0, "many"),
    (1, "one"),
    (2, "few"),
    (4, "few"),
    (5, "many"),
    (12, "many"),
    (21, "many"),
    (22, "few"),
    (1.5, "other"),
]
ENGLISH = [
    (0, "other"),
    (1, "one"),
    (2, "other"),
    (21, "other"),
    (1.5, "other"),
    (Decimal("1"), "one"),
    (Decimal("1.0"), "other"),
]


@pytest.mark.parametrize(
    ("locale", "count", "expected"),
    [("uk", count, category) for count, category in UKRAINIAN]
    + [("pl", count, category) for count, category in POLISH]
    + [("en", count, category) for count, category in ENGLISH],
)
def test_plural_category_follows_cldr(
    locale: str, count: int | float | Decimal, expected: str
) -> None:
    # given a locale and a count
    # when its plural category is computed
    category = plural_category(locale, count)

    # then it is CLDR's
    assert category == expected


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("pt-br", "one"), ("pt_BR", "one"), ("en-us", "one"), ("xx", "one")],
)
def test_plural_category_of_regional_and_unknown_locales(
    locale: str, expected: str
) -> None:
    # given a regional or unknown locale
    # when the category of 1 is computed
    category = plural_category(locale, 1)

    # then the rules of the language (or English) apply
    assert category == expected


@pytest.mark.parametrize(
    "count", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")]
)
def test_plural_category_of_a_non_finite_count_is_other(
    count: float | Decimal,
) -> None:
    # given a count Babel cannot classify
    # when its category is computed
    category = plural_category("uk", count)

    # then it is "other" instead of an error
    assert category == "other"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("uk", ("one", "few", "many", "other")),
        ("pl", ("one", "few", "many", "other")),
        ("en", ("one", "other")),
        ("ar", ("zero", "one", "two", "few", "many", "other")),
        ("zh-hans", ("other",)),
        ("ja", ("other",)),
    ],
)
def test_plural_categories_lists_those_of_the_locale(
    locale: str, expected: tuple[str, ...]
) -> None:
    # given a locale
    # when its categories are listed
    categories = plural_categories(locale)

    # then they are the locale's, in CLDR order, with "other"
    assert categories == expected
