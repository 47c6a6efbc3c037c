import hashlib
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


def secret_fingerprint(value: str) -> str:
    """A short digest that tells two secrets apart without revealing either.

    Eight hex digits of SHA-256: enough to see in the log that a token
    changed again, far too little to find the token from.
    """
    if not value:
        return ""

    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def token_change_record(
    *, bot: Bot, old: str, new: str, actor: Any = None, actor_label: str = ""
) -> AuditEntry | None:
    """Record that a bot's token was set, replaced or cleared; None if unchanged.

    Only the public bot id part of the token and fingerprints are kept.
    """
    if old == new:
        return None

    change = "cleared" if not new else ("set" if not old else "replaced")
    detail = {
        "change": change,
        "telegram_bot_id": (new or old).partition(":")[0],
        "old_fingerprint": secret_fingerprint(old),
        "new_fingerprint": secret_fingerprint(new),
    }

    return audit_record(
        action=Action.TOKEN_CHANGE,
        bot=bot,
        actor=actor,
        actor_label=actor_label,
        detail=detail,
    )
