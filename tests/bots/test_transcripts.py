import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from bots.models import (
    Bot,
    Conversation,
    OutboundMessage,
    ProcessedUpdate,
    SpecVersion,
    Transcript,
)
from bots.services.specs import spec_publish
from bots.services.transcripts import (
    TranscriptInvalidError,
    transcript_run,
    transcripts_import,
    transcripts_run_all,
)
from bots.sql.postgresql import APPLIED_TABLE, schema_name
from i18n.services import translation_set
from tests.bots.conftest import Webhook
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

DEMO_TRANSCRIPTS = (
    Path(__file__).resolve().parents[2] / "bots" / "demo" / "transcripts.json"
)
SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en"],
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [
                [
                    {"label": "main.again", "goto": "main"},
                    {"label": "main.help", "goto": "help"},
                ]
            ],
        },
        "help": {"type": "reply_template.v1", "template": "{{ t('help.text') }}"},
    },
}
TEXTS = {
    "main.text": "Hi, {first_name}!",
    "main.again": "Again",
    "main.help": "Help",
    "help.text": "<b>Press</b> a button &amp; see.",
}
PASSING = [
    {"say": "/start", "expect": ["Hi, Tester!"], "buttons": ["Again", "Help"]},
    {"press": "Again", "expect": ["Hi, Tester!"], "buttons": ["Again", "Help"]},
    {"press": "Help", "expect": ["Press a button & see."], "buttons": []},
]


@pytest.fixture
def bot(db: None) -> Bot:
    bot: Bot = BotFactory.create()
    for key, text in TEXTS.items():
        translation_set(bot_id=bot.pk, locale="en", key=key, forms=text)
    spec_publish(bot=bot, source=SPEC)
    bot.refresh_from_db()

    return bot


def _transcript(bot: Bot, steps: list[Any], **fields: Any) -> Transcript:
    return Transcript.objects.create(
        bot=bot, name=fields.pop("name", "menu"), locale="en", steps=steps, **fields
    )


def _difference(bot: Bot, steps: list[Any]) -> str:
    transcript = _transcript(bot, steps)
    result = transcript_run(bot=bot, version=SPEC, transcript=transcript)
    assert result.passed is False

    return result.difference


def _runtime_rows() -> tuple[int, int, int, int]:
    return (
        Conversation.objects.count(),
        ProcessedUpdate.objects.count(),
        OutboundMessage.objects.count(),
        SpecVersion.objects.count(),
    )


def test_a_matching_transcript_passes_and_leaves_nothing_behind(bot: Bot) -> None:
    # given a transcript of what the bot does
    transcript = _transcript(bot, PASSING)
    before = _runtime_rows()

    # when it runs against the live version and against a draft source
    assert bot.live_version is not None
    live = transcript_run(bot=bot, version=bot.live_version, transcript=transcript)
    draft = transcript_run(bot=bot, version=SPEC, transcript=transcript)

    # then both pass, and no conversation, update, reply or version is left
    assert (live.passed, live.difference) == (True, "")
    assert (draft.passed, draft.difference) == (True, "")
    assert (draft.name, draft.locale, draft.is_draft) == ("menu", "en", False)
    assert _runtime_rows() == before == (0, 0, 0, 1)


@pytest.mark.parametrize(
    ("steps", "difference"),
    [
        (
            [{"say": "/start", "expect": ["Hello, Tester!"]}],
            'step 1 (say "/start"): reply 1 was "Hi, Tester!", '
            'expected "Hello, Tester!"',
        ),
        (
            [{"say": "/start", "expect": ["Hi, Tester!", "More"]}],
            'step 1 (say "/start"): reply 2 should be "More"; got 1 reply',
        ),
        (
            [{"say": "/start", "expect": []}],
            'step 1 (say "/start"): unexpected reply 1 "Hi, Tester!"',
        ),
        (
            [{"say": "/start"}, {"press": "Help", "buttons": ["Again"]}],
            'step 2 (press "Help"): the buttons were [], expected ["Again"]',
        ),
        (
            [{"say": "/start"}, {"press": "Menu"}],
            'step 2 (press "Menu"): there is no such button; the buttons are '
            '["Again", "Help"]',
        ),
        (
            [{"say": "/start", "vars": {"drink": "tea"}}],
            'step 1 (say "/start"): vars.drink is not set, expected "tea"',
        ),
        (
            [{"say": "/start"}, {"press": "Again"}, {"sing": "la"}],
            'Step 3 has an unknown key "sing".',
        ),
        (
            [{"say": "/start", "press": "Again"}],
            "Step 1 must have exactly one of say, press or contact.",
        ),
        ([{"say": "/start", "expect": "Hi"}], "Step 1 expect must be a list of texts."),
        ([], "The transcript must have a non-empty list of steps."),
    ],
)
def test_a_transcript_that_differs_fails_with_its_first_difference(
    bot: Bot, steps: list[Any], difference: str
) -> None:
    before = _runtime_rows()

    assert _difference(bot, steps) == difference
    assert _runtime_rows() == before


def test_all_skips_drafts_unless_asked(bot: Bot) -> None:
    _transcript(bot, PASSING, name="b reviewed")
    _transcript(bot, [{"say": "/start", "expect": []}], name="a draft", is_draft=True)

    default = transcripts_run_all(bot=bot, version=SPEC)
    everything = transcripts_run_all(bot=bot, version=SPEC, include_drafts=True)

    assert [(r.name, r.passed) for r in default] == [("b reviewed", True)]
    assert [(r.name, r.is_draft, r.passed) for r in everything] == [
        ("a draft", True, False),
        ("b reviewed", False, True),
    ]


def test_import_refuses_a_bad_transcript_and_saves_nothing(bot: Bot) -> None:
    data = [
        {"name": "good", "locale": "en", "steps": PASSING},
        {"name": "bad", "locale": "en", "steps": [{"press": ""}]},
    ]

    with pytest.raises(TranscriptInvalidError) as caught:
        transcripts_import(bot=bot, data=data)

    assert caught.value.message == (
        "Transcript 2: Step 1 press must be a non-empty text."
    )
    assert Transcript.objects.count() == 0


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _orders_and_applied(bot: Bot) -> tuple[int, int]:
    schema = schema_name(bot.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {schema}.orders")
        orders = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM {schema}.{APPLIED_TABLE}")
        applied = cursor.fetchone()[0]

    return orders, applied


@pytest.mark.django_db(transaction=True)
def test_the_demo_transcripts_pass_in_both_locales_and_send_nothing(
    demo_bot: Bot, webhook: Webhook, telegram_api: FakeTelegramControl
) -> None:
    # given the demo bot, loaded with its shipped transcripts, and a real
    # user midway through an order
    shipped = json.loads(DEMO_TRANSCRIPTS.read_text(encoding="utf-8"))
    webhook.post(
        {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 4242, "type": "private"},
                "from": {"id": 4242, "is_bot": False, "first_name": "Ann"},
                "text": "/order",
            },
        }
    )
    real = Conversation.objects.get()
    telegram_api.clear_calls()
    before = (_runtime_rows(), _orders_and_applied(demo_bot))

    # when they run against the live version
    assert demo_bot.live_version is not None
    results = transcripts_run_all(bot=demo_bot, version=demo_bot.live_version)

    # then every one passes, both locales are covered, and nothing is left
    # behind or sent, the real user's conversation untouched
    assert [(r.name, r.locale, r.passed, r.difference) for r in results] == [
        (item["name"], item["locale"], True, "")
        for item in sorted(shipped, key=lambda item: item["name"])
    ]
    assert {r.locale for r in results} == {"en", "uk"}
    assert (_runtime_rows(), _orders_and_applied(demo_bot)) == before
    assert Conversation.objects.get().state == real.state
    assert telegram_api.calls() == []


@pytest.mark.django_db(transaction=True)
def test_test_bot_prints_a_line_per_transcript_and_a_summary(
    demo_bot: Bot,
) -> None:
    shipped = sorted(
        json.loads(DEMO_TRANSCRIPTS.read_text(encoding="utf-8")),
        key=lambda item: item["name"],
    )
    out = StringIO()

    call_command("test_bot", "demo", stdout=out)

    assert out.getvalue().splitlines() == [
        *(f"PASS {item['name']} {item['locale']}" for item in shipped),
        f"{len(shipped)} passed, 0 failed",
    ]


@pytest.mark.django_db(transaction=True)
def test_test_bot_reports_a_failure_and_exits_with_1(demo_bot: Bot) -> None:
    # given the demo with one wrong transcript among its shipped ones
    demo_bot.transcripts.exclude(name="en: no orders yet").delete()
    Transcript.objects.create(
        bot=demo_bot,
        name="en: wrong help",
        locale="en",
        steps=[{"say": "/help", "expect": ["No help."]}],
    )
    out = StringIO()

    with pytest.raises(SystemExit) as caught:
        call_command("test_bot", str(demo_bot.pk), "--version", "1", stdout=out)

    help_text = (
        "I take drink orders for the café.\n\nPress Order a drink and answer a "
        "few questions, or see My orders.\nCommands: /order, /orders, /help, and "
        "/cancel to stop an order."
    )
    assert caught.value.code == 1
    assert out.getvalue().splitlines() == [
        "PASS en: no orders yet en",
        "FAIL en: wrong help en",
        f'  step 1 (say "/help"): reply 1 was {_quoted(help_text)}, '
        'expected "No help."',
        "1 passed, 1 failed",
    ]


def test_test_bot_refuses_an_unknown_version_or_an_invalid_draft(bot: Bot) -> None:
    bot.draft_spec = {"start": "main"}
    bot.save()

    with pytest.raises(CommandError, match="has no version 7"):
        call_command("test_bot", bot.slug, "--version", "7")
    with pytest.raises(CommandError, match="--version takes a number"):
        call_command("test_bot", bot.slug, "--version", "latest")
    with pytest.raises(CommandError) as invalid:
        call_command("test_bot", bot.slug, "--version", "draft")
    with pytest.raises(CommandError, match="No bot with id or slug 'nope'"):
        call_command("test_bot", "nope")

    assert str(invalid.value) == (
        "The draft spec is invalid: default_locale: Field required; "
        "locales: Field required; nodes: Field required"
    )
