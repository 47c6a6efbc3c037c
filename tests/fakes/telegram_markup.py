"""Message text as the Bot API reads it: parsed markup, and what it shows.

The Bot API limits a message to 4096 UTF-16 code units "after entities
parsing", so a text is measured by what it shows. HTML is parsed as
Telegram's own parser does: only its tags, ``&lt;``, ``&gt;``, ``&amp;``,
``&quot;`` and numeric references are read, and a ``<`` that starts no
supported tag, a tag left open or an end tag that closes nothing is refused
"can't parse entities". MarkdownV2 is only approximated: escapes are read
and formatting characters dropped, without checking that every reserved
character is escaped.
"""

import html
import re

HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "code",
        "del",
        "em",
        "i",
        "ins",
        "pre",
        "s",
        "span",
        "strike",
        "strong",
        "tg-emoji",
        "tg-spoiler",
        "u",
    }
)

_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_TAG_NAME = re.compile(r"[^\s>]*")
_ATTRIBUTE = r"""[^\s=>]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?"""
_ATTRIBUTES = re.compile(rf"((?:\s+{_ATTRIBUTE})*)\s*>")
_END_TAG = re.compile(r"</([^\s>]*)\s*>")
_SPOILER_CLASS = re.compile(
    r"""\bclass\s*=\s*(?:"tg-spoiler"|'tg-spoiler'|tg-spoiler)"""
)
_MARKDOWN = re.compile(r"```[^\n`]*\n?|\\(.)|\]\((?:\\.|[^)\\])*\)|[*_~|`\[]", re.S)


class MarkupError(Exception):
    """Text the Bot API refuses to parse; the message is its explanation."""


def _offset(text: str, index: int) -> int:
    # Telegram reports positions in bytes of the UTF-8 text.
    return len(text[:index].encode("utf-8", "surrogatepass"))


def _entity(reference: str) -> str:
    if not reference.startswith("&#"):
        return html.unescape(reference)
    digits = reference[2:-1]
    number = int(digits[1:], 16) if digits[0] in "xX" else int(digits)
    # Telegram keeps a reference to no character as it is written.
    if not 0 < number < 0x110000:
        return reference

    return chr(number)


def _end_tag(text: str, index: int, open_tags: list[str]) -> int:
    at = _offset(text, index)
    if not open_tags:
        raise MarkupError(f"Unexpected end tag at byte offset {at}")
    match = _END_TAG.match(text, index)
    if match is None:
        raise MarkupError(f"Unclosed end tag at byte offset {at}")
    name = match.group(1).lower()
    if name and name != open_tags[-1]:
        raise MarkupError(
            f"Unmatched end tag at byte offset {at}, expected "
            f'"</{open_tags[-1]}>", found "</{name}>"'
        )
    open_tags.pop()

    return match.end()


def _start_tag(text: str, index: int, open_tags: list[str]) -> int:
    at = _offset(text, index)
    name_match = _TAG_NAME.match(text, index + 1)
    assert name_match is not None
    if name_match.end() == len(text):
        raise MarkupError(f"Unclosed start tag at byte offset {at}")
    name = name_match.group(0).lower()
    if name not in HTML_TAGS:
        raise MarkupError(f'Unsupported start tag "{name}" at byte offset {at}')
    match = _ATTRIBUTES.match(text, name_match.end())
    if match is None:
        raise MarkupError(f"Unclosed start tag at byte offset {at}")
    if name == "span" and not _SPOILER_CLASS.search(match.group(1)):
        raise MarkupError(
            f'Tag "span" must have class "tg-spoiler" at byte offset {at}'
        )
    open_tags.append(name)

    return match.end()


def html_shown(text: str) -> str:
    """Return what Telegram shows of HTML ``text``: tags gone, entities read.

    Raises MarkupError with Telegram's explanation for markup it refuses.
    """
    shown: list[str] = []
    open_tags: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        entity = _ENTITY.match(text, index) if char == "&" else None
        if entity is not None:
            shown.append(_entity(entity.group(0)))
            index = entity.end()
        elif char != "<":
            shown.append(char)
            index += 1
        elif text.startswith("</", index):
            index = _end_tag(text, index, open_tags)
        else:
            index = _start_tag(text, index, open_tags)
    if open_tags:
        raise MarkupError(
            f'Can\'t find end tag corresponding to start tag "{open_tags[-1]}"'
        )

    return "".join(shown)


def markdown_shown(text: str) -> str:
    """Return about what Telegram shows of MarkdownV2 ``text``.

    Escapes are read; formatting characters, link targets and code fences
    are dropped, also inside code where Telegram would keep them. Never
    raises.
    """
    return _MARKDOWN.sub(lambda match: match.group(1) or "", text)


def shown_text(text: str, parse_mode: str) -> str:
    """Return the text a message shows under ``parse_mode`` (any case).

    Raises MarkupError for HTML Telegram refuses and ValueError for a parse
    mode it does not know.
    """
    mode = parse_mode.lower()
    if mode == "html":
        return html_shown(text)
    if mode in ("markdownv2", "markdown"):
        return markdown_shown(text)
    if mode == "":
        return text

    raise ValueError(f"unsupported parse mode {parse_mode!r}")


def utf16_units(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units, as Telegram counts.

    Never raises.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
