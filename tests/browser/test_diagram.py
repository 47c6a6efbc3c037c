from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from bots.models import Bot

Shot = Callable[[Page, str], Path]
ReadmeShot = Callable[..., Path | None]

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


def test_diagram_draws_every_node_of_the_demo_bot(
    staff_page: Page,
    base_url: str,
    demo_bot: Bot,
    shot: Shot,
    readme_shot: ReadmeShot,
) -> None:
    page = staff_page
    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/change/")
    page.locator(".object-tools").get_by_role("link", name="Diagram").click()

    expect(page).to_have_url(f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/diagram/")
    expect(page.locator("#diagram-summary")).to_have_text(
        "9 nodes, 13 ways between them, 7 ways in."
    )
    svg = page.locator("#diagram-canvas svg.spec-diagram")
    expect(svg).to_be_visible()
    nodes = svg.locator("g.nodes > g")
    assert {node.get_attribute("id") for node in nodes.all()} == DEMO_NODES
    expect(svg.locator("#node-main")).to_contain_text("menu.v1")
    expect(svg.locator("#node-main")).to_be_visible()
    expect(page.locator("#diagram-unreachable")).to_have_count(0)
    expect(page.locator("#diagram-missing")).to_have_count(0)
    shot(page, "diagram")
    # The demo's diagram is about 1,500 pixels wide.
    readme_shot(page, "diagram", ready="#diagram-canvas svg", css_width=1600)

    page.select_option("#diagram-version", "live")

    expect(page).to_have_url(
        f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/diagram/?version=live"
    )
    expect(page.locator("#diagram-summary")).to_have_text(
        "9 nodes, 13 ways between them, 7 ways in."
    )
    expect(svg.locator(":scope > title")).to_have_text("Café demo, version 1")


def test_diagram_of_an_invalid_draft_lists_its_errors(
    staff_page: Page, base_url: str, demo_bot: Bot, shot: Shot
) -> None:
    page = staff_page
    draft = {**demo_bot.draft_spec, "start": 7}
    Bot.objects.filter(pk=demo_bot.pk).update(draft_spec=draft)

    page.goto(f"{base_url}/admin/bots/bot/{demo_bot.pk}/studio/diagram/")

    expect(page.locator("#diagram-canvas")).to_have_count(0)
    expect(page.locator(".diagram-invalid")).to_have_text(
        "The draft is not a valid spec, so it cannot be drawn. Its errors:"
    )
    expect(page.locator("#diagram-errors li")).to_have_text(
        ["start: Input should be a valid string"]
    )
    shot(page, "invalid-draft")
