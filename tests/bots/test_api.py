import io
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management import CommandError, call_command
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from bots.models import Bot, SpecVersion
from bots.services.specs import spec_publish
from i18n.services import translation_set
from tests.factories import BotFactory

# Starting Django in a fresh interpreter takes a second or two; this leaves
# room for a loaded machine without letting a hung worker stall the suite.
WORKER_TIMEOUT = 30.0

SPEC: dict[str, Any] = {
    "start": "main",
    "default_locale": "en",
    "locales": ["en", "uk"],
    "commands": {"help": {"node": "help", "description": "cmd.help"}},
    "nodes": {
        "main": {
            "type": "menu.v1",
            "text": "main.text",
            "rows": [
                [
                    {"label": "menu.help", "goto": "help"},
                    {"label": "bf.back", "goto": "main"},
                ]
            ],
        },
        "help": {
            "type": "reply_template.v1",
            "template": "{{ t('help.text') }} {{ t('main.text') }}",
        },
    },
}
SPEC_KEYS = ["cmd.help", "help.text", "main.text", "menu.help"]

# Every endpoint of the API, with a body it would accept.
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("post", "/bots/{id}/reload", None),
    ("post", "/bots/{id}/versions", {"spec": SPEC}),
    ("get", "/bots/{id}/i18n?locale=en", None),
    ("put", "/bots/{id}/i18n/en/main.text", {"other": "Hi"}),
    ("get", "/bots/{id}/i18n/coverage", None),
]


def _token_client(user: AbstractUser) -> APIClient:
    _token, key = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    return client


@pytest.fixture
def staff_user(db: None) -> AbstractUser:
    user: AbstractUser = get_user_model().objects.create_user(
        username="editor", password=None, is_staff=True, is_superuser=True
    )

    return user


@pytest.fixture
def api(staff_user: AbstractUser) -> APIClient:
    """A client sending a staff user's token."""
    return _token_client(staff_user)


@pytest.fixture
def api_bot(db: None) -> Bot:
    """A bot with English texts for every key of SPEC and one Ukrainian text."""
    bot: Bot = BotFactory.create(default_locale="en")
    for key in SPEC_KEYS:
        translation_set(bot_id=bot.pk, locale="en", key=key, forms=f"{key} in en")
    translation_set(bot_id=bot.pk, locale="uk", key="main.text", forms="Головне")

    return bot


def _database_url() -> str:
    database = connection.settings_dict
    user = quote(database["USER"] or "")
    password = f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
    host = database["HOST"] or "127.0.0.1"
    port = database["PORT"] or 5432

    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


def translator_ask(process: subprocess.Popen[str], **request: Any) -> dict[str, Any]:
    """Ask a translator process for a pattern; see tests.i18n.translator_worker."""
    if request:
        assert process.stdin is not None
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    readable, _, _ = select.select([stdout], [], [], WORKER_TIMEOUT)
    assert readable, "the translator process did not answer in time"

    answer: dict[str, Any] = json.loads(stdout.readline())

    return answer


@pytest.fixture
def translator_process(transactional_db: None) -> Iterator[subprocess.Popen[str]]:
    """Another OS process serving ``translator_get`` from the test database."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "botfactory.settings",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.i18n.translator_worker"],
        cwd=settings.BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert translator_ask(process) == {"ready": True}
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=WORKER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _revision(bot: Bot) -> int:
    return Bot.objects.values_list("cache_revision", flat=True).get(pk=bot.pk)


# --- reload -----------------------------------------------------------------


def test_reload_answers_the_live_version_and_bumps_the_revision(
    api: APIClient, api_bot: Bot
) -> None:
    # given a bot with two published versions
    spec_publish(bot=api_bot, source=SPEC)
    spec_publish(bot=api_bot, source=SPEC)
    before = _revision(api_bot)

    # when it is reloaded through the API
    response = api.post(f"/bots/{api_bot.pk}/reload")

    # then the live version is named and the cache revision moved on
    assert response.status_code == 200
    assert response.json() == {
        "bot_id": api_bot.pk,
        "spec_version": 2,
        "cache_invalidated": True,
    }
    assert _revision(api_bot) == before + 1


def test_reload_of_a_bot_with_nothing_published_is_a_409(
    api: APIClient, api_bot: Bot
) -> None:
    before = _revision(api_bot)

    response = api.post(f"/bots/{api_bot.pk}/reload")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "The bot has no published version.",
        "code": "no_live_version",
    }
    assert _revision(api_bot) == before


def test_reload_through_the_api_is_seen_by_another_process(
    translator_process: subprocess.Popen[str], api: APIClient, api_bot: Bot
) -> None:
    # given another process that cached the bot's texts at its revision
    spec_publish(bot=api_bot, source=SPEC)
    before = _revision(api_bot)
    request = {"bot_id": api_bot.pk, "locale": "en", "key": "main.text"}
    warm = translator_ask(translator_process, revision=before, **request)

    # when a text is edited behind the cache, then the bot reloaded
    translation_set(bot_id=api_bot.pk, locale="en", key="main.text", forms="New")
    stale = translator_ask(translator_process, revision=before, **request)
    response = api.post(f"/bots/{api_bot.pk}/reload")
    after = _revision(api_bot)
    fresh = translator_ask(translator_process, revision=after, **request)

    # then the other process reads the new text at the revision it now finds
    assert response.status_code == 200
    assert after == before + 1
    assert warm == {"pattern": "main.text in en", "queries": 1}
    assert stale == {"pattern": "main.text in en", "queries": 0}
    assert fresh == {"pattern": "New", "queries": 1}


# --- publishing -------------------------------------------------------------


def test_publish_answers_the_new_version_and_its_warnings(
    api: APIClient, api_bot: Bot, staff_user: AbstractUser
) -> None:
    before = _revision(api_bot)

    response = api.post(
        f"/bots/{api_bot.pk}/versions",
        {"spec": SPEC, "message": "First cut"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json() == {
        "bot_id": api_bot.pk,
        "spec_version": 1,
        "warnings": [
            {
                "path": "commands.help.description",
                "message": "The translation 'cmd.help' is missing in: uk.",
                "code": "missing_translation",
            },
            {
                "path": "nodes.help.template",
                "message": "The translation 'help.text' is missing in: uk.",
                "code": "missing_translation",
            },
            {
                "path": "nodes.main.rows[0][0].label",
                "message": "The translation 'menu.help' is missing in: uk.",
                "code": "missing_translation",
            },
        ],
    }
    api_bot.refresh_from_db()
    version = SpecVersion.objects.get(bot=api_bot)
    assert (version.number, version.message, version.author) == (
        1,
        "First cut",
        staff_user,
    )
    assert api_bot.live_version == version
    assert api_bot.cache_revision == before + 1


def test_publish_warns_of_every_text_of_a_locale_that_has_none(
    api: APIClient, api_bot: Bot
) -> None:
    # given a spec that adds a locale the bot has no translations in
    spec = {**SPEC, "locales": ["en", "de"]}

    # when it is published
    response = api.post(f"/bots/{api_bot.pk}/versions", {"spec": spec}, format="json")

    # then each text is reported as missing there, built-in ones excepted
    assert response.status_code == 201
    assert [
        (warning["path"], warning["message"]) for warning in response.json()["warnings"]
    ] == [
        ("commands.help.description", "The translation 'cmd.help' is missing in: de."),
        ("nodes.help.template", "The translation 'help.text' is missing in: de."),
        ("nodes.help.template", "The translation 'main.text' is missing in: de."),
        (
            "nodes.main.rows[0][0].label",
            "The translation 'menu.help' is missing in: de.",
        ),
        ("nodes.main.text", "The translation 'main.text' is missing in: de."),
    ]


def test_publish_warns_of_a_text_longer_than_a_telegram_message(
    api: APIClient, api_bot: Bot
) -> None:
    # given a help text of 2,050 characters whose plural "other" form is one
    # unit over the limit counted in UTF-16, as Telegram counts (each 🍰 is
    # two units, each ☕ one)
    translation_set(
        bot_id=api_bot.pk,
        locale="en",
        key="help.text",
        forms={"one": "short", "other": "☕" * 2 + "🍰" * 2047 + "x"},
    )

    # when the spec is published
    response = api.post(f"/bots/{api_bot.pk}/versions", {"spec": SPEC}, format="json")

    # then it is published, with a warning at the text's path
    assert response.status_code == 201
    assert [
        (warning["path"], warning["code"])
        for warning in response.json()["warnings"]
        if warning["code"] == "text_too_long"
    ] == [("nodes.help.template", "text_too_long")]


def test_publish_numbers_versions_per_bot(api: APIClient, api_bot: Bot) -> None:
    other: Bot = BotFactory.create()
    spec_publish(bot=other, source=SPEC)
    spec_publish(bot=api_bot, source=SPEC)

    response = api.post(f"/bots/{api_bot.pk}/versions", {"spec": SPEC}, format="json")

    assert response.status_code == 201
    assert response.json()["spec_version"] == 2
    assert SpecVersion.objects.get(bot=api_bot, number=2).message == ""


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        (
            {**SPEC, "start": "nowhere", "locales": "en"},
            {
                "locales": ["Input should be a valid list"],
                "start": ["There is no node 'nowhere'."],
            },
        ),
        (
            {
                **SPEC,
                "nodes": {
                    **SPEC["nodes"],
                    "help": {**SPEC["nodes"]["help"], "next": "gone"},
                },
            },
            {"nodes.help.next": ["There is no node 'gone'."]},
        ),
        ([1, 2], {"$": ["The spec must be a JSON object."]}),
    ],
    ids=["invalid", "lint-error", "not-an-object"],
)
def test_publish_of_a_spec_with_errors_is_a_400_and_publishes_nothing(
    api: APIClient, api_bot: Bot, spec: Any, fields: dict[str, list[str]]
) -> None:
    # given a bot with a live version
    live, _warnings = spec_publish(bot=api_bot, source=SPEC)
    before = _revision(api_bot)

    # when a spec with errors is sent
    response = api.post(f"/bots/{api_bot.pk}/versions", {"spec": spec}, format="json")

    # then every error is named by its path, and nothing changed
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The spec has errors.",
        "code": "spec_invalid",
        "fields": fields,
    }
    api_bot.refresh_from_db()
    assert list(SpecVersion.objects.filter(bot=api_bot)) == [live]
    assert (api_bot.live_version, api_bot.cache_revision) == (live, before)


def test_publish_without_a_spec_is_a_400_naming_the_field(
    api: APIClient, api_bot: Bot
) -> None:
    response = api.post(
        f"/bots/{api_bot.pk}/versions", {"message": "x" * 501}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The input is invalid.",
        "code": "invalid",
        "fields": {
            "spec": ["This field is required."],
            "message": ["Ensure this field has no more than 500 characters."],
        },
    }
    assert not SpecVersion.objects.filter(bot=api_bot).exists()


def test_malformed_json_is_a_400_parse_error_and_publishes_nothing(
    api: APIClient, api_bot: Bot
) -> None:
    before = _revision(api_bot)

    response = api.post(
        f"/bots/{api_bot.pk}/versions",
        data='{"spec": {',
        content_type="application/json",
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "JSON parse error - Expecting property name enclosed in double "
        "quotes: line 1 column 11 (char 10)",
        "code": "parse_error",
    }
    assert not SpecVersion.objects.filter(bot=api_bot).exists()
    assert _revision(api_bot) == before


def _spec_with_text(text: str) -> dict[str, Any]:
    help_node = {**SPEC["nodes"]["help"], "template": text}

    return {**SPEC, "nodes": {**SPEC["nodes"], "help": help_node}}


UNSTORABLE = (
    "JSON parse error - a number out of range, or a text holding a NUL "
    "character or a lone surrogate, cannot be stored."
)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (json.dumps({"spec": _spec_with_text("Hi\x00")}), UNSTORABLE),
        (json.dumps({"spec": _spec_with_text("Hi \ud800")}), UNSTORABLE),
        ('{"spec": {"start": "main", "x": 1e999}}', UNSTORABLE),
        (
            '{"spec": ' + "[" * 100_000,
            "JSON parse error - the document nests too deep.",
        ),
    ],
    ids=["nul", "lone-surrogate", "infinity", "deep"],
)
def test_json_the_database_could_not_store_is_a_400_and_publishes_nothing(
    api: APIClient, api_bot: Bot, body: str, detail: str
) -> None:
    before = _revision(api_bot)

    response = api.post(
        f"/bots/{api_bot.pk}/versions", data=body, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"detail": detail, "code": "parse_error"}
    assert not SpecVersion.objects.filter(bot=api_bot).exists()
    assert _revision(api_bot) == before


def test_a_body_over_the_upload_limit_is_a_413(api: APIClient, api_bot: Bot) -> None:
    text = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = api.post(
        f"/bots/{api_bot.pk}/versions",
        {"spec": _spec_with_text(text)},
        format="json",
    )

    assert response.status_code == 413
    assert response.json() == {
        "detail": "The body is too large.",
        "code": "payload_too_large",
    }
    assert not SpecVersion.objects.filter(bot=api_bot).exists()


def test_a_body_that_is_not_json_is_a_415(api: APIClient, api_bot: Bot) -> None:
    response = api.post(
        f"/bots/{api_bot.pk}/versions", data="spec=1", content_type="text/plain"
    )

    assert response.status_code == 415
    assert response.json() == {
        "detail": 'Unsupported media type "text/plain" in request.',
        "code": "unsupported_media_type",
    }
    assert not SpecVersion.objects.filter(bot=api_bot).exists()


# --- authentication, permissions and unknown bots ---------------------------


def _call(client: APIClient, method: str, path: str, body: Any, bot_id: int) -> Any:
    return getattr(client, method)(path.format(id=bot_id), body, format="json")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_request_without_a_token_is_a_401(
    api_bot: Bot, method: str, path: str, body: Any
) -> None:
    before = _revision(api_bot)

    response = _call(APIClient(), method, path, body, api_bot.pk)

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert response["WWW-Authenticate"] == "Token"
    assert _revision(api_bot) == before
    assert not SpecVersion.objects.exists()


@pytest.mark.parametrize(
    "header", ["Token not-a-token", "Token", "Token two words"], ids=str
)
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_request_with_a_wrong_token_is_a_401(
    api_bot: Bot, header: str, method: str, path: str, body: Any
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = _call(client, method, path, body, api_bot.pk)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert set(response.json()) == {"detail", "code"}
    assert not SpecVersion.objects.exists()


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_a_token_of_a_user_who_is_not_staff_is_a_403(
    api_bot: Bot, method: str, path: str, body: Any
) -> None:
    user = get_user_model().objects.create_user(username="someone", password=None)
    before = _revision(api_bot)

    response = _call(_token_client(user), method, path, body, api_bot.pk)

    assert response.status_code == 403
    assert response.json() == {
        "detail": "You do not have permission to perform this action.",
        "code": "permission_denied",
    }
    assert _revision(api_bot) == before
    assert not SpecVersion.objects.exists()


def test_a_token_of_a_deactivated_user_is_a_401(
    staff_user: AbstractUser, api_bot: Bot
) -> None:
    client = _token_client(staff_user)
    staff_user.is_active = False
    staff_user.save()

    response = client.post(f"/bots/{api_bot.pk}/reload")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "User inactive or deleted.",
        "code": "not_authenticated",
    }


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_an_unknown_bot_is_a_404(
    api: APIClient, db: None, method: str, path: str, body: Any
) -> None:
    response = _call(api, method, path, body, 999999)

    assert response.status_code == 404
    assert response.json() == {"detail": "There is no such bot.", "code": "not_found"}


def test_api_urls_have_no_trailing_slash(api: APIClient, api_bot: Bot) -> None:
    spec_publish(bot=api_bot, source=SPEC)
    before = _revision(api_bot)

    response = api.post(f"/bots/{api_bot.pk}/reload/")

    assert response.status_code == 404
    assert _revision(api_bot) == before


def test_a_method_the_endpoint_lacks_is_a_405(api: APIClient, api_bot: Bot) -> None:
    response = api.get(f"/bots/{api_bot.pk}/reload")

    assert response.status_code == 405
    assert response.json() == {
        "detail": 'Method "GET" not allowed.',
        "code": "method_not_allowed",
    }


# --- tokens -----------------------------------------------------------------


def _create_api_token(username: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", username, stdout=out, stderr=err)

    return out.getvalue(), err.getvalue()


def test_create_api_token_prints_only_a_token_that_opens_the_api(
    staff_user: AbstractUser, api_bot: Bot
) -> None:
    # when a token is created for a staff user
    out, err = _create_api_token("editor")

    # then stdout holds the token alone, and the token works
    key = out.removesuffix("\n")
    assert out == f"{key}\n" and key and "\n" not in key
    assert err.startswith("API token for editor created; it expires ")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get(f"/bots/{api_bot.pk}/i18n/coverage")
    assert response.status_code == 200


def test_create_api_token_stores_only_a_digest(staff_user: AbstractUser) -> None:
    out, _err = _create_api_token("editor")
    key = out.strip()

    token = AuthToken.objects.get(user=staff_user)

    assert key not in (token.digest, token.token_key)
    assert token.token_key == key[: len(token.token_key)]
    assert len(token.digest) == 128


def test_create_api_token_gives_each_call_its_own_token(
    staff_user: AbstractUser,
) -> None:
    first, _err = _create_api_token("editor")
    second, _err = _create_api_token("editor")

    assert first != second
    assert AuthToken.objects.filter(user=staff_user).count() == 2


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("nobody", "There is no user 'nobody'."),
        (
            "someone",
            "User 'someone' is not active staff; the API is for staff only.",
        ),
    ],
)
def test_create_api_token_refuses_unknown_and_non_staff_users(
    db: None, username: str, message: str
) -> None:
    get_user_model().objects.create_user(username="someone", password=None)

    with pytest.raises(CommandError) as raised:
        _create_api_token(username)

    assert str(raised.value) == message
    assert not AuthToken.objects.exists()
