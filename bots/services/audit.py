from typing import Any

from bots.models import AuditEntry, Bot

Action = AuditEntry.Action


def audit_record(
    *,
    action: str,
    bot: Bot | None,
    actor: Any = None,
    actor_label: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record who did what to which bot. ``detail`` must hold no secret.

    ``actor`` is the member of staff; a management command passes no actor
    and names itself in ``actor_label`` (``command:rotate_bot_token``).
    """
    if actor is not None and getattr(actor, "is_authenticated", False):
        label = actor_label or actor.get_username()
    else:
        actor, label = None, actor_label or "system"

    return AuditEntry.objects.create(
        action=action,
        bot=bot,
        bot_label=(bot.slug if bot is not None else "")[:100],
        actor=actor,
        actor_label=label[:150],
        detail=detail or {},
    )
