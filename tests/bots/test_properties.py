"""Generated hostile input: whatever arrives, the answer is a documented one.

Bodies go to the webhook through Django's test client (arbitrary bytes,
arbitrary JSON, real updates with fields of the wrong type), specs go to
the checks the admin and the API run (arbitrary JSON, the demo spec with
fields of the wrong type). None may crash; each status and error is one
the README documents. The examples are derived from a fixed seed, so a run
in CI tries the same inputs every time.
"""

import copy
import html
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from bots.models import Bot, Conversation, ProcessedUpdate, SpecVersion
from bots.services.bots import DEMO_DIR
from bots.services.specs import SpecRejectedError, spec_check
from dsl import (
    ConversationState,
    SpecInvalidError,
    TemplateRenderError,
    escape,
    render_template,
    spec_lint,
    spec_validate,
)
from tests.bots.conftest import DEMO_SECRET, FIXTURES
from tests.dsl.support import DictTranslator
from tests.factories import BotFactory

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_INT64 = 2**63

_bounded = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Each example through the webhook is a request and a transaction or two.
_through_the_webhook = settings(_bounded, max_examples=60)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)

_UPDATES = [
    json.loads(path.read_text(encoding="utf-8"))
    for path in sorted(Path(FIXTURES).glob("*.json"))
]
_DEMO_SPEC = json.loads((DEMO_DIR / "spec.json").read_text(encoding="utf-8"))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path of every value inside ``value``, itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))

    return found


def _mutate(data: st.DataObject, document: Any, *, times: int) -> Any:
    """Replace, delete or wrap a few values anywhere in a copy of a document."""
    document = copy.deepcopy(document)
    for _ in range(times):
        path = data.draw(st.sampled_from(_paths(document)))
        how = data.draw(st.sampled_from(["replace", "delete", "wrap", "stringify"]))
        if not path:
            document = data.draw(json_values) if how == "replace" else [document]
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if how == "delete":
            del parent[last]
        elif how == "wrap":
            parent[last] = [parent[last]]
        elif how == "stringify":
            parent[last] = json.dumps(parent[last])
        else:
            parent[last] = data.draw(json_values)

    return document


def _envelope_is_valid(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    update_id = document.get("update_id")

    return (
        isinstance(update_id, int)
        and not isinstance(update_id, bool)
        and -_INT64 <= update_id < _INT64
    )


def _post(bot: Bot, body: bytes | str, **headers: str) -> Any:
    client = Client(raise_request_exception=False)

    return client.post(
        f"/telegram/{bot.pk}/webhook",
        data=body,
        content_type=headers.pop("content_type", "application/json"),
        headers={SECRET_HEADER: DEMO_SECRET, **headers},
    )


def _conversations_are_whole(bot: Bot) -> None:
    """Every stored state reads back, at a node of the spec or not started."""
    nodes = set(_DEMO_SPEC["nodes"])
    for stored in Conversation.objects.filter(bot=bot).values_list("state", flat=True):
        state = ConversationState.model_validate(stored or {})
        assert state.node is None or state.node in nodes


# The webhook


@_through_the_webhook
@given(body=st.binary(min_size=1, max_size=600))
def test_arbitrary_bytes_get_a_200_or_a_400_json_error(
    demo_bot: Bot, body: bytes
) -> None:
    response = _post(demo_bot, body)

    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.json()["code"] == "bad_update"


@_through_the_webhook
@given(value=json_values | st.floats())
def test_any_json_value_gets_200_exactly_when_it_is_an_update_envelope(
    demo_bot: Bot, value: Any
) -> None:
    response = _post(demo_bot, json.dumps(value))

    expected = 200 if _envelope_is_valid(value) else 400
    assert response.status_code == expected
    assert response.json()["code" if expected == 400 else "ok"] in ("bad_update", True)


_fresh_ids = itertools.count(1_000_000)


@_through_the_webhook
@given(data=st.data(), update=st.sampled_from(_UPDATES))
def test_a_real_update_with_mutated_fields_is_never_a_crash(
    demo_bot: Bot, data: st.DataObject, update: dict[str, Any]
) -> None:
    # given a real update, with a fresh id, and a few of its fields changed
    fresh = {**update, "update_id": next(_fresh_ids)}
    mutated = _mutate(data, fresh, times=data.draw(st.integers(1, 3)))

    # when it is delivered
    response = _post(demo_bot, json.dumps(mutated))

    # then a valid envelope is 200 and claimed, anything else a 400, and no
    # conversation is left half-written
    if _envelope_is_valid(mutated):
        assert (response.status_code, response.json()) == (200, {"ok": True})
        assert ProcessedUpdate.objects.filter(
            bot=demo_bot, update_id=mutated["update_id"]
        ).exists()
    else:
        assert (response.status_code, response.json()["code"]) == (400, "bad_update")
    _conversations_are_whole(demo_bot)


@_through_the_webhook
@given(
    secret=st.one_of(st.none(), st.just(DEMO_SECRET), st.text(max_size=40)),
    content_type=st.sampled_from(
        ["application/json", "application/JSON; charset=utf-8", "text/plain", ""]
    ),
    body=st.binary(max_size=64) | json_values.map(json.dumps).map(str.encode),
)
def test_any_secret_and_media_type_get_a_documented_status(
    demo_bot: Bot, secret: str | None, content_type: str, body: bytes
) -> None:
    client = Client(raise_request_exception=False)
    headers = {} if secret is None else {SECRET_HEADER: secret}

    response = client.post(
        f"/telegram/{demo_bot.pk}/webhook",
        data=body,
        content_type=content_type,
        headers=headers,
    )

    codes = {
        403: "forbidden",
        415: "unsupported_media_type",
        400: "bad_update",
        200: None,
    }
    assert response.status_code in codes
    if secret != DEMO_SECRET:
        assert response.status_code == 403
    if response.status_code != 200:
        assert response.json()["code"] == codes[response.status_code]


# Specs: the checks of the admin and the API


def _check_never_crashes(source: Any) -> None:
    """Run the checks publishing runs; only their documented errors may escape."""
    try:
        spec = spec_validate(source)
    except SpecInvalidError as exc:
        assert exc.errors
        assert all(
            isinstance(error.path, str) and error.message for error in exc.errors
        )
    else:
        keys = {"en": {"main.text"}, "uk": set()}
        for issue in spec_lint(spec, translation_keys=keys):
            assert issue.severity in ("error", "warning")
            assert isinstance(issue.path, str) and issue.message
    try:
        spec_check(bot=None, source=source)
    except SpecRejectedError as exc:
        assert exc.fields
        assert all(
            isinstance(path, str) and texts for path, texts in exc.fields.items()
        )


@_bounded
@given(source=json_values)
def test_any_json_value_as_a_spec_is_accepted_or_refused_with_paths(
    source: Any,
) -> None:
    _check_never_crashes(source)


@_bounded
@given(data=st.data())
def test_the_demo_spec_with_mutated_fields_is_accepted_or_refused_with_paths(
    data: st.DataObject,
) -> None:
    source = _mutate(data, _DEMO_SPEC, times=data.draw(st.integers(1, 4)))

    _check_never_crashes(source)


@pytest.fixture
def staff_api(db: None) -> APIClient:
    user = get_user_model().objects.create_user(
        username="editor", is_staff=True, is_superuser=True
    )
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)

    return client


@settings(_bounded, max_examples=25)
@given(data=st.data())
def test_publishing_a_mutated_spec_through_the_api_is_201_or_400(
    staff_api: APIClient, data: st.DataObject
) -> None:
    # given a bot and a mutated demo spec
    bot = BotFactory.create(default_locale="en")
    source = _mutate(data, _DEMO_SPEC, times=data.draw(st.integers(1, 3)))

    # when it is published through the API
    response = staff_api.post(
        f"/bots/{bot.pk}/versions", {"spec": source}, format="json"
    )

    # then it is published, or refused with its paths (a spec that is not a
    # JSON object at all fails the request's own check) and nothing published
    published = SpecVersion.objects.filter(bot=bot).count()
    if response.status_code == 201:
        assert published == 1
    else:
        refusal = (response.status_code, response.json()["code"])
        assert refusal in ((400, "spec_invalid"), (400, "invalid"))
        assert response.json()["fields"]
        assert published == 0


# Text from users in every parse mode


_MARKDOWN_RESERVED = set("_*[]()~`>#+-=|{}.!\\")


@_bounded
@given(text=st.text(max_size=60))
def test_any_text_escaped_for_html_shows_exactly_as_typed(text: str) -> None:
    escaped = escape(text, "HTML")

    assert not re.search(r"[<>]", escaped)
    assert re.fullmatch(r"([^&]|&(lt|gt|amp|#39|#34);)*", escaped, re.DOTALL)
    assert html.unescape(escaped) == text


@_bounded
@given(text=st.text(max_size=60))
def test_any_text_escaped_for_markdown_v2_has_every_reserved_character_escaped(
    text: str,
) -> None:
    escaped = escape(text, "MarkdownV2")

    # Read as Telegram does: a backslash makes the next character literal;
    # a reserved character without one would be markup.
    shown, index = [], 0
    while index < len(escaped):
        char = escaped[index]
        assert char not in _MARKDOWN_RESERVED or char == "\\"
        if char == "\\":
            shown.append(escaped[index + 1])
            index += 2
        else:
            shown.append(char)
            index += 1
    assert "".join(shown) == text


@_bounded
@given(
    value=json_values,
    name=st.text(max_size=30),
    parse_mode=st.sampled_from(["HTML", "MarkdownV2", None]),
)
def test_user_values_in_a_template_are_escaped_or_refused_never_a_crash(
    value: Any, name: str, parse_mode: Any
) -> None:
    def render(source: str) -> str:
        return render_template(
            source,
            variables={"v": value},
            translator=DictTranslator({"hi": "<b>{name}</b>"}, "en"),
            parse_mode=parse_mode,
            user={"id": 1, "first_name": name},
        )

    assert render("{{ user.first_name }}") == escape(name, parse_mode)
    try:
        render("{{ vars.v }}|{{ t('hi', name=vars.v) }}|{{ vars.v ~ user.first_name }}")
    except TemplateRenderError as exc:
        assert str(exc)
