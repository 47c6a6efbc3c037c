from dsl import spec_lint, spec_translation_refs
from tests.dsl.support import spec_of

MENU = {
    "type": "menu.v1",
    "text": "main.text",
    "rows": [[{"label": "go", "goto": "reply"}, {"label": "bf.back", "goto": "main"}]],
}
REPLY = {
    "type": "reply_template.v1",
    "template": "{{ t('reply.text') }} {{ t('main.text') }}",
}


def test_translation_refs_name_every_use_of_a_key_by_its_path():
    spec = spec_of(
        {"main": MENU, "reply": REPLY},
        commands={"help": {"node": "reply", "description": "cmd.help"}},
    )

    refs = spec_translation_refs(spec)

    assert refs == [
        ("commands.help.description", "cmd.help"),
        ("nodes.main.text", "main.text"),
        ("nodes.main.rows[0][0].label", "go"),
        ("nodes.main.rows[0][1].label", "bf.back"),
        ("nodes.reply.template", "reply.text"),
        ("nodes.reply.template", "main.text"),
    ]


def test_the_linter_checks_exactly_the_keys_the_refs_name():
    spec = spec_of({"main": MENU, "reply": REPLY})
    keys = {key for _path, key in spec_translation_refs(spec)}

    complete = spec_lint(spec, translation_keys={"en": keys})
    empty = spec_lint(spec, translation_keys={"en": set()})

    assert complete == []
    # bf.back has a built-in text, so only the bot's own keys are missing.
    assert sorted(issue.message for issue in empty) == [
        "The translation 'go' is missing in: en.",
        "The translation 'main.text' is missing in: en.",
        "The translation 'main.text' is missing in: en.",
        "The translation 'reply.text' is missing in: en.",
    ]
