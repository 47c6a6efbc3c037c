"""The studio's diagram page: the flow of a spec version or the draft."""

import copy
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from bots.models import Bot, BotAccess

SVG = "{http://www.w3.org/2000/svg}"
DEMO_NODES = {
    "node-main",
    "node-order",
    "node-save_order",
    "node-order_done",
    "node-my_orders",
    "node-orders_list",
    "node-help",
    "node-ask",
    "node-ask_answer",
}


def _client(*, superuser: bool = True, username: str = "root") -> tuple[Client, Any]:
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(username, password="pw-123456")
    else:
        user = model.objects.create_user(username, password="pw-123456", is_staff=True)
    client = Client()
    client.force_login(user)
    return client, user


def _get(client: Client, bot: Bot, **params: str) -> Any:
    return client.get(f"/admin/bots/bot/{bot.pk}/studio/diagram/", params)


def _svg(response: Any) -> ET.Element:
    match = re.search(
        r'<svg xmlns="http://www.w3.org/2000/svg"[^>]*class="spec-diagram".*?</svg>',
        response.content.decode(),
        re.DOTALL,
    )
    assert match is not None
    return ET.fromstring(match.group(0))


def _groups(root: ET.Element) -> dict[str, str]:
    return {
        element.get("id", ""): element.get("class", "")
        for element in root.iter(f"{SVG}g")
        if element.get("id")
    }


def _draft(bot: Bot, change: Any) -> None:
    draft = copy.deepcopy(bot.live_version.source)  # type: ignore[union-attr]
    change(draft)
    bot.draft_spec = draft
    bot.save(update_fields=["draft_spec"])


def test_the_live_demo_is_drawn_with_every_node_and_a_legend(demo_bot: Bot) -> None:
    client, _user = _client()

    response = _get(client, demo_bot, version="live")

    assert response.status_code == 200
    root = _svg(response)
    assert set(_groups(root)) == DEMO_NODES
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "▶ /order · link order" in texts
    assert "☕ Order a drink" in texts
    html = response.content.decode()
    assert 'id="diagram-legend"' in html
    assert "9 nodes, 13 ways between them, 7 ways in." in html
    assert 'id="diagram-unreachable"' not in html
    assert 'id="diagram-missing"' not in html


def test_a_version_number_and_the_draft_are_drawn_too(demo_bot: Bot) -> None:
    client, _user = _client()
    _draft(
        demo_bot,
        lambda d: (
            d["nodes"].pop("ask_answer") and d["nodes"]["ask"].update(next="main")
        ),
    )

    by_number = _get(client, demo_bot, version="1")
    draft = _get(client, demo_bot)

    assert set(_groups(_svg(by_number))) == DEMO_NODES
    assert set(_groups(_svg(draft))) == DEMO_NODES - {"node-ask_answer"}
    assert '<option value="draft" selected>draft</option>' in draft.content.decode()


def test_unreachable_nodes_and_missing_targets_are_marked(demo_bot: Bot) -> None:
    client, _user = _client()

    def change(draft: dict[str, Any]) -> None:
        draft["nodes"]["main"]["rows"][0][0]["goto"] = "ghost"
        del draft["commands"]["order"]
        draft["deep_links"] = [
            link for link in draft["deep_links"] if link["node"] != "order"
        ]

    _draft(demo_bot, change)

    response = _get(client, demo_bot, version="draft")

    assert response.status_code == 200
    groups = _groups(_svg(response))
    assert groups["node-order"] == "node node-wizard unreachable"
    assert groups["node-save_order"] == "node node-sql_exec unreachable"
    assert groups["node-order_done"] == "node node-reply_template unreachable"
    assert groups["missing-ghost"] == "missing"
    html = response.content.decode()
    # The draft is stored as jsonb, which orders an object's keys.
    assert "Unreachable: order, order_done, save_order." in html
    assert "Missing targets: ghost." in html


def test_an_invalid_draft_lists_its_errors_instead(demo_bot: Bot) -> None:
    client, _user = _client()
    _draft(demo_bot, lambda d: d["nodes"]["order"]["steps"][2].update(max=0))

    response = _get(client, demo_bot, version="draft")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="spec-diagram"' not in html
    assert (
        "<li><code>nodes.order.steps[2].max</code>: "
        "max must not be less than the minimum</li>"
    ) in html


@pytest.mark.parametrize("version", ["7", "live2", "0", "9" * 40, "-1"])
def test_an_unknown_version_is_a_form_error(demo_bot: Bot, version: str) -> None:
    client, _user = _client()

    response = _get(client, demo_bot, version=version)

    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="diagram-version-error"' in html
    assert "There is no version" in html
    assert 'class="spec-diagram"' not in html


def test_texts_are_escaped(demo_bot: Bot) -> None:
    client, _user = _client()
    demo_bot.name = '<script>alert("x")</script>'
    demo_bot.save(update_fields=["name"])

    response = _get(client, demo_bot, version="live")

    html = response.content.decode()
    assert "<script>alert" not in html
    title = _svg(response).find(f"{SVG}title")
    assert title is not None and title.text == '<script>alert("x")</script>, version 1'


def test_view_access_is_needed(demo_bot: Bot) -> None:
    stranger, _user = _client(superuser=False, username="stranger")
    viewer, user = _client(superuser=False, username="viewer")
    BotAccess.objects.create(bot=demo_bot, user=user, level=BotAccess.Level.VIEW)

    assert _get(stranger, demo_bot).status_code == 403
    assert _get(viewer, demo_bot).status_code == 200
