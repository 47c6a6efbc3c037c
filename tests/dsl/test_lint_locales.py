"""Missing translations are reported for every locale a spec serves."""

from dsl import LintIssue, spec_lint
from tests.dsl.support import spec_of

MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [
        [{"label": "main.go", "goto": "main"}, {"label": "bf.back", "goto": "main"}]
    ],
}


def _missing(issues):
    return [(i.path, i.message) for i in issues if i.code == "missing_translation"]


def test_a_locale_without_any_translation_has_every_text_reported():
    # given a spec in English and German, and texts in English only (the
    # bot's translations do not name German at all)
    spec = spec_of({"main": MENU}, locales=["en", "de"])
    keys = {"en": {"main.text", "main.go"}}

    # when linted
    issues = spec_lint(spec, translation_keys=keys)

    # then German misses both of the bot's own texts, and no built-in one
    assert _missing(issues) == [
        ("nodes.main.rows[0][0].label", "The translation 'main.go' is missing in: de."),
        ("nodes.main.text", "The translation 'main.text' is missing in: de."),
    ]


def test_a_bot_without_any_translation_has_every_text_reported():
    spec = spec_of({"main": MENU})

    issues = spec_lint(spec, translation_keys={})

    assert issues == [
        LintIssue(
            "nodes.main.rows[0][0].label",
            "The translation 'main.go' is missing in: en.",
            "missing_translation",
            "warning",
        ),
        LintIssue(
            "nodes.main.text",
            "The translation 'main.text' is missing in: en.",
            "missing_translation",
            "warning",
        ),
    ]


def test_translations_of_a_locale_the_spec_does_not_serve_are_not_checked():
    spec = spec_of({"main": MENU})
    keys = {"en": {"main.text", "main.go"}, "fr": set()}

    assert spec_lint(spec, translation_keys=keys) == []


def test_without_the_bot_s_keys_translations_are_not_checked():
    assert spec_lint(spec_of({"main": MENU}, locales=["en", "de"])) == []
