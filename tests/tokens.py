"""Telegram-shaped bot tokens for tests, made at run time.

A token is the bot id, a colon and 35 url-safe characters. Deriving the
characters from a label keeps each token of the suite distinct and the
same on every run, without a token-shaped string in the source.
"""

import hashlib


def fake_bot_token(bot_id: int, label: str) -> str:
    """Return a token of Telegram's shape for ``bot_id``, fixed by ``label``."""
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()

    return f"{bot_id}:{digest[:35]}"
