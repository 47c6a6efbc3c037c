import copy
import html
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from bots.models import AuditEntry, Bot, BotAccess, SpecVersion, Transcript
from bots.services.specs import (
    TranscriptsFailedError,
    spec_publish,
)
from bots.studio.versions import DiffLine, spec_diff_lines
from i18n.services import translation_set
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en", "uk"],
    "commands": {
        "start": {"description": "cmd.start"},
        "help": {"node": "help", "description": "cmd.help"},
    },
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [[{"label": "main.help", "goto": "help"}]],
        },
        "help": {"type": "reply_template.v1", "template": "{{ t('help.text') }}"},
    },
}
TEXTS = {
    "en": {
        "cmd.start": "Main menu",
        "cmd.help": "How it works",
        "main.text": "Hi!",
        "main.help": "Help",
        "help.text": "Press Help.",
    },
    "uk": {
        "cmd.start": "Головне меню",
        "cmd.help": "Як це працює",
        "main.text": "Привіт!",
        "main.help": "Допомога",
        "help.text": "Натисніть «Допомога».",
    },
}
# What the bot is meant to answer, in English.
HELP_STEPS = [
    {"say": "/start", "expect": ["Hi!"], "buttons": ["Help"]},
    {"press": "Help", "expect": ["Press Help."]},
]


def _changed(**texts: str) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["nodes"]["help"]["template"] = texts.get("template", "{{ t('main.text') }}")

    return spec


@pytest.fixture
def bot(db: None) -> Bot:
    bot: Bot = BotFactory.create(draft_spec=SPEC)
    for locale, texts in TEXTS.items():
        for key, text in texts.items():
            translation_set(bot_id=bot.pk, locale=locale, key=key, forms=text)
    Transcript.objects.create(bot=bot, name="help", locale="en", steps=HELP_STEPS)
    spec_publish(bot=bot, source=SPEC, message="first")
    bot.refresh_from_db()

    return bot


def _staff(level: int | None, bot: Bot, name: str = "member") -> Client:
    user = get_user_model().objects.create_user(
        username=name, password=None, is_staff=True
    )
    if level is not None:
        BotAccess.objects.create(bot=bot, user=user, level=level)
    client = Client()
    client.force_login(user)

    return client


def _state(bot: Bot) -> tuple[Any, ...]:
    fresh = Bot.objects.get(pk=bot.pk)

    return (
        fresh.live_version_id,
        list(SpecVersion.objects.filter(bot=bot).values_list("number", flat=True)),
        AuditEntry.objects.count(),
        fresh.draft_spec,
    )


def _messages(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def _versions_url(bot: Bot) -> str:
    return f"/admin/bots/bot/{bot.pk}/studio/versions/"


FAILED_HELP = (
    'help (en): step 2 (press "Help"): reply 1 was "Hi!", expected "Press Help."'
)


def test_publish_is_refused_when_a_transcript_fails(bot: Bot) -> None:
    before = _state(bot)

    with pytest.raises(TranscriptsFailedError) as caught:
        spec_publish(bot=bot, source=_changed())

    assert caught.value.code == "transcripts_failed"
    assert caught.value.fields == {"transcripts": [FAILED_HELP]}
    assert _state(bot) == before


def test_the_api_answers_400_with_the_failed_transcripts(bot: Bot) -> None:
    user = get_user_model().objects.create_user(
        username="api", password=None, is_staff=True, is_superuser=True
    )
    _token, key = AuthToken.objects.create(user=user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    before = _state(bot)

    response = api.post(f"/bots/{bot.pk}/versions", {"spec": _changed()}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The conversation tests failed.",
        "code": "transcripts_failed",
        "fields": {"transcripts": [FAILED_HELP]},
        "transcripts": [
            {
                "name": "help",
                "locale": "en",
                "difference": FAILED_HELP.removeprefix("help (en): "),
            }
        ],
    }
    assert _state(bot) == before


def test_a_draft_transcript_does_not_block_a_publish(bot: Bot) -> None:
    Transcript.objects.filter(bot=bot).update(is_draft=True)

    version, warnings = spec_publish(bot=bot, source=_changed())

    assert (version.number, warnings) == (2, [])


@pytest.mark.django_db(transaction=True)
def test_publish_sets_the_command_list_per_locale(
    telegram_api: FakeTelegramControl, bot: Bot
) -> None:
    telegram_api.clear_calls()

    version, warnings = spec_publish(bot=bot, source=SPEC)

    calls = telegram_api.calls(token=bot.token)
    assert [(c["method"], c["params"], c["status"]) for c in calls] == [
        (
            "setMyCommands",
            {
                "commands": [
                    {"command": "help", "description": "How it works"},
                    {"command": "start", "description": "Main menu"},
                ]
            },
            200,
        ),
        (
            "setMyCommands",
            {
                "commands": [
                    {"command": "help", "description": "How it works"},
                    {"command": "start", "description": "Main menu"},
                ],
                "language_code": "en",
            },
            200,
        ),
        (
            "setMyCommands",
            {
                "commands": [
                    {"command": "help", "description": "Як це працює"},
                    {"command": "start", "description": "Головне меню"},
                ],
                "language_code": "uk",
            },
            200,
        ),
    ]
    assert (version.number, warnings) == (2, [])


@pytest.mark.django_db(transaction=True)
def test_a_bot_without_token_or_inactive_gets_no_command_list(
    telegram_api: FakeTelegramControl, bot: Bot
) -> None:
    telegram_api.clear_calls()
    Bot.objects.filter(pk=bot.pk).update(is_active=False)
    bot.refresh_from_db()
    spec_publish(bot=bot, source=SPEC)
    bot.is_active, bot.token = True, ""
    bot.save()

    spec_publish(bot=bot, source=SPEC)

    assert telegram_api.calls() == []
    assert list(bot.versions.values_list("number", flat=True)) == [3, 2, 1]


@pytest.mark.django_db(transaction=True)
def test_a_telegram_error_is_a_warning_and_keeps_the_publish(
    telegram_api: FakeTelegramControl, bot: Bot
) -> None:
    telegram_api.add_fault(
        method="setMyCommands", status=400, description="Bad Request: too many commands"
    )

    version, warnings = spec_publish(bot=bot, source=SPEC)

    bot.refresh_from_db()
    assert bot.live_version_id == version.pk
    assert version.number == 2
    assert [(w.path, w.code, w.severity, w.message) for w in warnings] == [
        (
            "commands",
            "commands_not_set",
            "warning",
            "The command list was not set in Telegram: Too many commands",
        )
    ]


def test_the_versions_page_lists_the_draft_and_every_version(
    bot: Bot, admin_client: Client
) -> None:
    Bot.objects.filter(pk=bot.pk).update(draft_spec=_changed())
    spec_publish(bot=bot, source=SPEC, message="<second>")

    page = admin_client.get(_versions_url(bot)).content.decode()

    assert 'class="draft-flag draft-differs"' in page
    assert 'id="draft-row" class="differs"' in page
    assert re.findall(
        r'<tr class="version-row( live)?" data-number="(\d+)">', page
    ) == [
        (" live", "2"),
        ("", "1"),
    ]
    assert "&lt;second&gt;" in page and "<second>" not in page
    assert re.findall(r'class="rollback-button button">', page) == [
        'class="rollback-button button">'
    ]
    assert 'id="publish-form"' in page


def test_publishing_from_the_page_creates_a_version_and_an_audit_entry(
    bot: Bot, admin_client: Client
) -> None:
    Bot.objects.filter(pk=bot.pk).update(draft_spec=_changed(template="Press Help."))

    response = admin_client.post(
        _versions_url(bot), {"action": "publish", "message": "static help"}
    )

    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.live_version is not None
    assert (bot.live_version.number, bot.live_version.message) == (2, "static help")
    assert bot.live_version.author is not None
    assert _messages(response) == [("success", "Published as version 2.")]
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry is not None
    assert (entry.action, entry.detail, entry.actor_label) == (
        "publish",
        {"version": 2},
        "admin",
    )


def test_publishing_a_draft_equal_to_the_live_version_changes_nothing(
    bot: Bot, admin_client: Client
) -> None:
    before = _state(bot)

    response = admin_client.post(_versions_url(bot), {"action": "publish"})

    assert _messages(response) == [
        ("info", "The draft is the live version 1: there is nothing to publish.")
    ]
    assert _state(bot) == before


def test_the_page_shows_failed_transcripts_and_changes_nothing(
    bot: Bot, admin_client: Client
) -> None:
    Bot.objects.filter(pk=bot.pk).update(draft_spec=_changed())
    before = _state(bot)

    response = admin_client.post(_versions_url(bot), {"action": "publish"})

    assert _messages(response) == [
        ("error", f"Not published: transcripts: {FAILED_HELP}")
    ]
    assert _state(bot) == before


def test_rollback_publishes_the_old_content_as_a_new_version(
    bot: Bot, admin_client: Client
) -> None:
    # given a second version whose help the transcript no longer checks
    Transcript.objects.filter(bot=bot).delete()
    first = bot.live_version
    assert first is not None
    spec_publish(bot=bot, source=_changed())

    # when the first is rolled back to in one click
    response = admin_client.post(
        _versions_url(bot), {"action": "rollback", "number": "1"}
    )

    # then a third version holds the first's content, live, and audited
    bot.refresh_from_db()
    assert bot.live_version is not None
    assert bot.live_version.number == 3
    assert bot.live_version.source == first.source
    assert bot.live_version.message == "Rollback to v1"
    assert _messages(response) == [
        ("success", "Rolled back: version 1 is live again as version 3.")
    ]
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry is not None
    assert (entry.action, entry.detail) == (
        "rollback",
        {"version": 3, "from_version": 1},
    )


@pytest.mark.parametrize("number", ["9", "zero", ""])
def test_a_rollback_to_an_unknown_version_changes_nothing(
    bot: Bot, admin_client: Client, number: str
) -> None:
    before = _state(bot)

    response = admin_client.post(
        _versions_url(bot), {"action": "rollback", "number": number}
    )

    expected = (
        "There is no version 9."
        if number == "9"
        else "Choose a version to roll back to."
    )
    assert _messages(response) == [("error", expected)]
    assert _state(bot) == before


def test_the_diff_of_a_small_change_is_exact(bot: Bot, admin_client: Client) -> None:
    Bot.objects.filter(pk=bot.pk).update(draft_spec=_changed(template="<b>Hi</b>"))

    page = admin_client.get(
        f"/admin/bots/bot/{bot.pk}/studio/versions/diff/?a=1&b=draft"
    ).content.decode()

    lines = re.findall(r'<span class="diff-line diff-(\w+)">(.*)</span>', page)
    assert [(kind, html.unescape(text)) for kind, text in lines] == [
        ("file", "--- v1"),
        ("file", "+++ draft"),
        ("hunk", "@@ -20,7 +20,7 @@"),
        ("same", '     "help": {'),
        ("same", '       "next": null,'),
        ("same", '       "parse_mode": "HTML",'),
        ("remove", '-      "template": "{{ t(\'help.text\') }}",'),
        ("add", '+      "template": "<b>Hi</b>",'),
        ("same", '       "type": "reply_template.v1"'),
        ("same", "     },"),
        ("same", '     "main": {'),
    ]
    assert "&lt;b&gt;Hi&lt;/b&gt;" in page


def test_diff_lines_of_equal_specs_are_empty() -> None:
    assert spec_diff_lines(a_label="v1", a=SPEC, b_label="v2", b=SPEC) == []
    assert spec_diff_lines(a_label="x", a={"a": 1}, b_label="y", b={"a": 2}) == [
        DiffLine("file", "--- x"),
        DiffLine("file", "+++ y"),
        DiffLine("hunk", "@@ -1,3 +1,3 @@"),
        DiffLine("same", " {"),
        DiffLine("remove", '-  "a": 1'),
        DiffLine("add", '+  "a": 2'),
        DiffLine("same", " }"),
    ]


@pytest.mark.parametrize("query", ["", "?a=1", "?a=1&b=7", "?a=draft&b=x"])
def test_a_bad_diff_request_is_a_clear_400(
    bot: Bot, admin_client: Client, query: str
) -> None:
    response = admin_client.get(
        f"/admin/bots/bot/{bot.pk}/studio/versions/diff/{query}"
    )

    assert response.status_code == 400
    assert 'id="diff-error"' in response.content.decode()


def test_pages_need_access_and_acting_needs_publish(bot: Bot) -> None:
    stranger = _staff(None, bot, "stranger")
    viewer = _staff(BotAccess.Level.VIEW, bot, "viewer")
    editor = _staff(BotAccess.Level.EDIT, bot, "editor")
    before = _state(bot)
    versions = _versions_url(bot)
    diff = f"{versions}diff/?a=1&b=draft"
    tests = f"/admin/bots/bot/{bot.pk}/studio/tests/"

    statuses = [
        stranger.get(versions).status_code,
        stranger.get(diff).status_code,
        stranger.get(tests).status_code,
        viewer.get(versions).status_code,
        viewer.get(diff).status_code,
        viewer.get(tests).status_code,
        viewer.post(versions, {"action": "publish"}).status_code,
        editor.post(versions, {"action": "rollback", "number": "1"}).status_code,
    ]

    assert statuses == [403, 403, 403, 200, 200, 200, 403, 403]
    assert "rollback-button" not in viewer.get(versions).content.decode()
    assert _state(bot) == before


def _results(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="test-result (pass|fail)" data-name="([^"]+)">', page)


def test_the_tests_page_runs_against_the_draft_or_the_live_version(
    bot: Bot, admin_client: Client
) -> None:
    Bot.objects.filter(pk=bot.pk).update(draft_spec=_changed())
    url = f"/admin/bots/bot/{bot.pk}/studio/tests/"

    draft = admin_client.post(url, {"action": "run", "against": "draft"})
    live = admin_client.post(url, {"action": "run", "against": "live"})
    bad = admin_client.post(url, {"action": "run", "against": "v1"})

    draft_page = draft.content.decode()
    assert _results(draft_page) == [("fail", "help")]
    assert (
        '<div class="test-difference">'
        + html.escape(FAILED_HELP.removeprefix("help (en): "))
        + "</div>"
    ) in draft_page
    assert _results(live.content.decode()) == [("pass", "help")]
    assert 'id="test-summary">1 passed, 0 failed' in live.content.decode()
    assert bad.status_code == 400


def test_marking_a_draft_reviewed_needs_edit(bot: Bot, admin_client: Client) -> None:
    draft = Transcript.objects.create(
        bot=bot, name="saved", locale="en", steps=HELP_STEPS, is_draft=True
    )
    viewer = _staff(BotAccess.Level.VIEW, bot, "viewer")
    url = f"/admin/bots/bot/{bot.pk}/studio/tests/"

    refused = viewer.post(url, {"action": "review", "transcript": str(draft.pk)})
    draft.refresh_from_db()
    assert (refused.status_code, draft.is_draft) == (403, True)
    page = admin_client.get(url).content.decode()
    assert page.count('class="draft-marker"') == 1
    assert page.count('class="review-button button"') == 1

    response = admin_client.post(url, {"action": "review", "transcript": str(draft.pk)})

    draft.refresh_from_db()
    assert draft.is_draft is False
    assert _messages(response) == [
        ("success", "saved is reviewed: it now runs on every publish.")
    ]
