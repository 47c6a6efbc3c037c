"""Escaping for Telegram parse modes and the safe ``{name}`` formatter."""

import re
from collections.abc import Mapping
from typing import Any, Literal

from markupsafe import Markup
from markupsafe import escape as html_escape

ParseMode = Literal["HTML", "MarkdownV2"]

# Every character MarkdownV2 reserves outside entities, per the Bot API.
_MARKDOWN_RESERVED = re.compile(r"([_*\[\]()~`>#+\-=|{}.!\\])")
# Only simple names are placeholders; ``{0}``, ``{a.b}`` or ``{a[0]}`` stay
# literal text, so a pattern can never reach into an object.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MarkdownText(str):
    """Text that is already valid MarkdownV2 and must not be escaped again."""

    __slots__ = ()


def _is_safe(value: object, parse_mode: ParseMode | None) -> bool:
    if parse_mode == "HTML":
        return isinstance(value, Markup)
    if parse_mode == "MarkdownV2":
        return isinstance(value, MarkdownText)

    return False


def value_text(value: object) -> str:
    """Return the text shown for a variable value; never raise.

    None shows as nothing and booleans as ``true``/``false``, as in JSON.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"

    return str(value)


def escape(text: str, parse_mode: ParseMode | None) -> str:
    """Return ``text`` escaped so Telegram shows it literally; never raise.

    HTML escapes ``&``, ``<``, ``>`` and quotes; MarkdownV2 puts a backslash
    before every reserved character; no parse mode leaves the text as is.
    """
    if parse_mode == "HTML":
        return str(html_escape(text))
    if parse_mode == "MarkdownV2":
        return _MARKDOWN_RESERVED.sub(r"\\\1", text)

    return text


def format_pattern(
    pattern: str, params: Mapping[str, Any], parse_mode: ParseMode | None
) -> str:
    """Substitute ``{name}`` placeholders of a translated pattern; never raise.

    Each value is escaped for ``parse_mode`` while the pattern itself may
    hold markup. ``{{`` and ``}}`` stand for literal braces, and a name
    missing from ``params`` stays as the placeholder text.
    """

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in params:
            return token
        value = params[name]
        if _is_safe(value, parse_mode):
            return str(value)

        return escape(value_text(value), parse_mode)

    return _PLACEHOLDER.sub(substitute, pattern)


def mark_safe(text: str, parse_mode: ParseMode | None) -> str:
    """Return ``text`` marked as markup that must not be escaped again.

    Never raises.
    """
    if parse_mode == "HTML":
        return Markup(text)
    if parse_mode == "MarkdownV2":
        return MarkdownText(text)

    return text
