import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from knox.models import AuthToken
from rest_framework.test import APIClient

from bots.models import AuditEntry, Bot, BotAccess, SpecVersion
from bots.services.access import bots_for_user
from bots.services.specs import spec_publish
from tests.bots.test_admin import SMALL_SPEC as SPEC
from tests.factories import BotAccessFactory, BotFactory, StaffUserFactory

pytestmark = pytest.mark.django_db

Level = BotAccess.Level


def _login(user: Any) -> Client:
    client = Client()
    client.force_login(user)

    return client


def _staff_with(bot: Bot, level: int) -> Any:
    return BotAccessFactory.create(bot=bot, level=level).user


def _change_data(bot: Bot, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": bot.name,
        "slug": bot.slug,
        "default_locale": bot.default_locale,
        "is_active": "on" if bot.is_active else "",
        "draft_spec": json.dumps(bot.draft_spec),
        "translations-TOTAL_FORMS": "0",
        "translations-INITIAL_FORMS": "0",
        "translations-MIN_NUM_FORMS": "0",
        "translations-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)

    return {key: value for key, value in data.items() if value != ""}


def _state(bot: Bot) -> tuple[Any, ...]:
    fresh = Bot.objects.get(pk=bot.pk)

    return (
        fresh.name,
        fresh.draft_spec,
        fresh.live_version_id,
        SpecVersion.objects.filter(bot=bot).count(),
    )


def _publish_action(client: Client, *bots: Bot) -> Any:
    return client.post(
        "/admin/bots/bot/",
        {"action": "publish_draft", "_selected_action": [str(b.pk) for b in bots]},
    )


def test_staff_without_access_see_no_bot_and_reach_none() -> None:
    bot = BotFactory.create(name="Secret Project")
    client = _login(StaffUserFactory.create())

    listing = client.get("/admin/bots/bot/")
    change = client.get(f"/admin/bots/bot/{bot.pk}/change/")
    ops = client.get(f"/admin/bots/bot/{bot.pk}/studio/ops/")
    export = client.get(f"/admin/bots/bot/{bot.pk}/studio/export/")
    versions = client.get("/admin/bots/specversion/")

    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 0
    assert "Secret Project" not in listing.content.decode()
    # The admin answers an object outside the queryset as "does not exist".
    assert (change.status_code, change["Location"]) == (302, "/admin/")
    assert (ops.status_code, export.status_code) == (404, 404)
    assert versions.status_code == 403


def test_view_level_shows_only_that_bot_read_only() -> None:
    mine = BotFactory.create(name="Mine", draft_spec=SPEC)
    BotFactory.create(name="Theirs")
    user = _staff_with(mine, Level.VIEW)
    client = _login(user)

    listing = client.get("/admin/bots/bot/")
    change = client.get(f"/admin/bots/bot/{mine.pk}/change/")

    assert [bot.name for bot in listing.context["cl"].result_list] == ["Mine"]
    assert "Theirs" not in listing.content.decode()
    assert change.status_code == 200
    assert change.context["has_change_permission"] is False
    assert change.context["has_delete_permission"] is False
    assert list(bots_for_user(user=user)) == [mine]


def test_view_level_cannot_change_or_publish() -> None:
    bot = BotFactory.create(name="Viewed", draft_spec=SPEC)
    client = _login(_staff_with(bot, Level.VIEW))
    before = _state(bot)

    changed = client.post(
        f"/admin/bots/bot/{bot.pk}/change/", _change_data(bot, name="Hacked")
    )
    published = _publish_action(client, bot)

    assert changed.status_code == 403
    # Not offered at all: the changelist is shown again, nothing is run.
    assert published.status_code == 200
    assert published.context["action_form"] is None
    assert _state(bot) == before
    assert AuditEntry.objects.count() == 0


def test_edit_level_changes_but_cannot_publish() -> None:
    bot = BotFactory.create(name="Edited", draft_spec=SPEC)
    other = BotFactory.create(name="Published elsewhere", draft_spec=SPEC)
    user = _staff_with(bot, Level.EDIT)
    BotAccessFactory.create(bot=other, user=user, level=Level.PUBLISH)
    client = _login(user)

    changed = client.post(
        f"/admin/bots/bot/{bot.pk}/change/", _change_data(bot, name="Renamed")
    )
    after_change = _state(bot)
    # The action is offered (PUBLISH on the other bot) but refuses this one,
    # and with it the whole selection.
    published = _publish_action(client, other, bot)

    assert changed.status_code == 302
    assert after_change == ("Renamed", SPEC, None, 0)
    assert published.status_code == 403
    assert _state(bot) == after_change
    assert _state(other) == ("Published elsewhere", SPEC, None, 0)


def test_publish_level_publishes_with_the_action() -> None:
    bot = BotFactory.create(draft_spec=SPEC)
    client = _login(_staff_with(bot, Level.PUBLISH))

    response = _publish_action(client, bot)

    assert response.status_code == 302
    version = SpecVersion.objects.get(bot=bot)
    assert (version.number, Bot.objects.get(pk=bot.pk).live_version_id) == (
        1,
        version.pk,
    )


def test_delete_needs_publish_and_is_audited() -> None:
    bot = BotFactory.create(name="Doomed", slug="doomed")
    editor = _staff_with(bot, Level.EDIT)
    owner = _staff_with(bot, Level.PUBLISH)

    refused = _login(editor).post(f"/admin/bots/bot/{bot.pk}/delete/", {"post": "yes"})
    still_there = Bot.objects.filter(pk=bot.pk).exists()
    deleted = _login(owner).post(f"/admin/bots/bot/{bot.pk}/delete/", {"post": "yes"})

    assert (refused.status_code, still_there) == (403, True)
    assert deleted.status_code == 302
    assert not Bot.objects.filter(pk=bot.pk).exists()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.bot_id, entry.bot_label, entry.actor_id) == (
        "delete",
        None,
        "doomed",
        owner.pk,
    )
    assert entry.detail == {"name": "Doomed", "bot_id": bot.pk}


def test_superuser_sees_every_bot(admin_client: Client) -> None:
    BotFactory.create(name="A")
    BotFactory.create(name="B")

    listing = admin_client.get("/admin/bots/bot/")

    assert [bot.name for bot in listing.context["cl"].result_list] == ["A", "B"]


def test_records_of_other_bots_are_hidden_with_their_names() -> None:
    mine = BotFactory.create(name="Mine")
    theirs = BotFactory.create(name="Their secret bot")
    spec_publish(bot=mine, source=SPEC)
    spec_publish(bot=theirs, source=SPEC)
    hidden = SpecVersion.objects.get(bot=theirs)
    client = _login(_staff_with(mine, Level.VIEW))

    listing = client.get("/admin/bots/specversion/")
    other = client.get(f"/admin/bots/specversion/{hidden.pk}/change/")
    translations = client.get("/admin/i18n/translation/")

    assert [v.bot_id for v in listing.context["cl"].result_list] == [mine.pk]
    assert "Their secret bot" not in listing.content.decode()
    assert other.status_code == 302
    assert translations.status_code == 200
    assert "Their secret bot" not in translations.content.decode()


def test_only_superusers_manage_access_and_every_change_is_audited(
    admin_client: Client, admin_user: Any
) -> None:
    bot = BotFactory.create(slug="shop")
    owner = _staff_with(bot, Level.PUBLISH)
    ann = StaffUserFactory.create(username="ann")

    refused = _login(owner).get("/admin/bots/botaccess/")
    added = admin_client.post(
        "/admin/bots/botaccess/add/",
        {"bot": str(bot.pk), "user": str(ann.pk), "level": str(Level.EDIT)},
    )
    access = BotAccess.objects.get(user=ann)
    raised = admin_client.post(
        f"/admin/bots/botaccess/{access.pk}/change/",
        {"bot": str(bot.pk), "user": str(ann.pk), "level": str(Level.PUBLISH)},
    )
    removed = admin_client.post(
        f"/admin/bots/botaccess/{access.pk}/delete/", {"post": "yes"}
    )

    assert refused.status_code == 403
    assert (added.status_code, raised.status_code, removed.status_code) == (
        302,
        302,
        302,
    )
    assert not BotAccess.objects.filter(user=ann).exists()
    entries = AuditEntry.objects.order_by("id")
    assert [
        (e.action, e.bot_label, e.actor_id, e.actor_label, e.detail) for e in entries
    ] == [
        (
            "access_change",
            "shop",
            admin_user.pk,
            "admin",
            {"user": "ann", "from": "none", "to": "edit"},
        ),
        (
            "access_change",
            "shop",
            admin_user.pk,
            "admin",
            {"user": "ann", "from": "edit", "to": "publish"},
        ),
        (
            "access_change",
            "shop",
            admin_user.pk,
            "admin",
            {"user": "ann", "from": "publish", "to": "none"},
        ),
    ]


def test_access_inline_on_the_bot_page_is_for_superusers_and_audited(
    admin_client: Client,
) -> None:
    bot = BotFactory.create(slug="inline", draft_spec=SPEC)
    ben = StaffUserFactory.create(username="ben")
    owner = _staff_with(bot, Level.PUBLISH)

    owner_page = _login(owner).get(f"/admin/bots/bot/{bot.pk}/change/")
    response = admin_client.post(
        f"/admin/bots/bot/{bot.pk}/change/",
        _change_data(
            bot,
            **{
                "access-TOTAL_FORMS": "1",
                "access-INITIAL_FORMS": "0",
                "access-MIN_NUM_FORMS": "0",
                "access-MAX_NUM_FORMS": "1000",
                "access-0-user": str(ben.pk),
                "access-0-level": str(Level.VIEW),
            },
        ),
    )

    assert [f.formset.prefix for f in owner_page.context["inline_admin_formsets"]] == [
        "translations"
    ]
    assert response.status_code == 302
    assert BotAccess.objects.get(user=ben).level == Level.VIEW
    entry = AuditEntry.objects.get(detail__user="ben")
    assert (entry.action, entry.detail) == (
        "access_change",
        {"user": "ben", "from": "none", "to": "view"},
    )


def _api(user: Any) -> APIClient:
    _token, key = AuthToken.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    return client


@pytest.mark.parametrize(
    ("level", "reload_status", "publish_status"),
    [
        (None, 404, 404),
        (Level.VIEW, 403, 403),
        (Level.EDIT, 200, 403),
        (Level.PUBLISH, 200, 201),
    ],
)
def test_api_tokens_act_with_their_users_access(
    level: int | None, reload_status: int, publish_status: int
) -> None:
    bot = BotFactory.create()
    spec_publish(bot=bot, source=SPEC)
    user = StaffUserFactory.create()
    if level is not None:
        BotAccess.objects.create(bot=bot, user=user, level=level)
    api = _api(user)

    reload = api.post(f"/bots/{bot.pk}/reload")
    publish = api.post(f"/bots/{bot.pk}/versions", {"spec": SPEC}, format="json")

    assert (reload.status_code, publish.status_code) == (reload_status, publish_status)
    if publish_status == 403:
        assert publish.json()["code"] == "permission_denied"
    if publish_status == 404:
        assert publish.json() == {
            "detail": "There is no such bot.",
            "code": "not_found",
        }
    expected_versions = 2 if publish_status == 201 else 1
    assert SpecVersion.objects.filter(bot=bot).count() == expected_versions


def test_inactive_or_non_staff_users_have_no_bots() -> None:
    bot = BotFactory.create()
    staff = _staff_with(bot, Level.PUBLISH)
    staff.is_active = False
    staff.save()
    plain = get_user_model().objects.create_user(username="plain", is_staff=False)
    BotAccess.objects.create(bot=bot, user=plain, level=Level.PUBLISH)

    assert list(bots_for_user(user=staff)) == []
    assert list(bots_for_user(user=plain)) == []


def test_staff_who_may_add_a_bot_get_publish_on_it() -> None:
    maker = StaffUserFactory.create(username="maker")
    maker.user_permissions.add(Permission.objects.get(codename="add_bot"))
    client = _login(maker)

    response = client.post(
        "/admin/bots/bot/add/",
        {
            "name": "Fresh",
            "slug": "fresh",
            "default_locale": "en",
            "draft_spec": "{}",
            "translations-TOTAL_FORMS": "0",
            "translations-INITIAL_FORMS": "0",
        },
    )

    bot = Bot.objects.get(slug="fresh")
    assert response.status_code == 302
    assert BotAccess.objects.get(bot=bot).user_id == maker.pk
    assert BotAccess.objects.get(bot=bot).level == Level.PUBLISH
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_id, entry.detail) == (
        "access_change",
        maker.pk,
        {"user": "maker", "from": "none", "to": "publish"},
    )
    assert (
        _login(StaffUserFactory.create()).get("/admin/bots/bot/add/").status_code == 403
    )
