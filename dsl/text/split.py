"""Splitting a long message text into chunks Telegram accepts.

Telegram limits a message to 4096 UTF-16 code units of text after its
markup is parsed, so tags, entities and MarkdownV2 markers are measured by
what they show, not by how they are written.
"""

import html
import re
from dataclasses import dataclass
from typing import Literal

from dsl.text.markup import ParseMode

TELEGRAM_TEXT_LIMIT = 4096

_HTML_TOKEN = re.compile(
    r"<(?P<slash>/?)(?P<tag>[A-Za-z][A-Za-z0-9-]*)\b[^>]*>"
    r"|(?P<entity>&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);)"
)
_MARKDOWN_TOKEN = re.compile(
    r"(?P<pre>```(?P<lang>[^\n`]*)(?P<newline>\n?)(?P<body>(?:\\.|[^`\\]|`(?!``))*)```)"
    r"|(?P<code>`(?:\\.|[^`\\])*`)"
    r"|(?P<link>!?\[(?P<label>(?:\\.|[^\]\\])*)\]\((?:\\.|[^)\\])*\))"
    r"|(?P<escape>\\.)"
    r"|(?P<marker>\|\||__|[*_~])",
    re.S,
)
_NAMED_ENTITIES = frozenset({"&lt;", "&gt;", "&amp;", "&quot;"})
_MARKDOWN_ESCAPE = re.compile(r"\\(.)", re.S)
_FENCE = "```"


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    units: int
    kind: Literal["text", "open", "close"] = "text"
    name: str = ""
    closer: str = ""
    in_code: bool = False


def utf16_length(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units, as Telegram counts.

    A character outside the Basic Multilingual Plane (most emoji) counts as
    two, a lone surrogate as one. Never raises.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def encodable(text: str) -> str:
    """Return ``text`` with every lone surrogate replaced by U+FFFD.

    A surrogate pair split over two code points is joined into its
    character, so the result always encodes as UTF-8 and measures the same
    in UTF-16. Never raises.
    """
    if text.isascii():
        return text

    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _chars(text: str, *, in_code: bool = False) -> list[_Token]:
    return [_Token(char, utf16_length(char), in_code=in_code) for char in text]


def _entity_shown(entity: str) -> str | None:
    """Return the character an entity stands for, None if Telegram has none.

    Telegram reads only four named entities and numeric references to a
    character; it shows any other entity as written.
    """
    if entity in _NAMED_ENTITIES:
        return html.unescape(entity)
    digits = entity[2:-1]
    # Seven digits already pass the last character.
    if not entity.startswith("&#") or len(digits) > 8:
        return None
    number = int(digits[1:], 16) if digits[0] in "xX" else int(digits)

    return chr(number) if 0 < number < 0x110000 else None


def _html_tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    for match in _HTML_TOKEN.finditer(text):
        tokens.extend(_chars(text[position : match.start()]))
        position = match.end()
        if match.group("entity"):
            shown = _entity_shown(match.group("entity"))
            if shown is None:
                tokens.extend(_chars(match.group(0)))
            else:
                tokens.append(_Token(match.group(0), utf16_length(shown)))
            continue
        name = match.group("tag").lower()
        if match.group("slash"):
            tokens.append(_Token(match.group(0), 0, "close", name))
        else:
            tokens.append(_Token(match.group(0), 0, "open", name, f"</{name}>"))
    tokens.extend(_chars(text[position:]))

    return tokens


def _shown(markdown: str) -> str:
    return _MARKDOWN_ESCAPE.sub(r"\1", markdown)


def _markdown_pre(match: re.Match[str]) -> list[_Token]:
    opening = _FENCE + match.group("lang") + match.group("newline")
    tokens = [_Token(opening, 0, "open", _FENCE, "\n" + _FENCE, in_code=True)]
    body = match.group("body")
    position = 0
    for escaped in _MARKDOWN_ESCAPE.finditer(body):
        tokens.extend(_chars(body[position : escaped.start()], in_code=True))
        tokens.append(
            _Token(escaped.group(0), utf16_length(escaped.group(1)), in_code=True)
        )
        position = escaped.end()
    tokens.extend(_chars(body[position:], in_code=True))
    tokens.append(_Token(_FENCE, 0, "close", _FENCE, in_code=True))

    return tokens


def _markdown_tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    open_markers: set[str] = set()
    position = 0
    for match in _MARKDOWN_TOKEN.finditer(text):
        tokens.extend(_chars(text[position : match.start()]))
        position = match.end()
        whole = match.group(0)
        if match.group("pre"):
            tokens.extend(_markdown_pre(match))
        elif match.group("code"):
            tokens.append(_Token(whole, utf16_length(_shown(whole[1:-1]))))
        elif match.group("link"):
            tokens.append(_Token(whole, utf16_length(_shown(match.group("label")))))
        elif match.group("escape"):
            tokens.append(_Token(whole, utf16_length(whole[1])))
        elif whole in open_markers:
            open_markers.discard(whole)
            tokens.append(_Token(whole, 0, "close", whole))
        else:
            open_markers.add(whole)
            tokens.append(_Token(whole, 0, "open", whole, whole))
    tokens.extend(_chars(text[position:]))

    return tokens


def _apply(stack: list[_Token], tokens: list[_Token]) -> list[_Token]:
    """Return the markup still open after ``tokens``, given what was open."""
    result = list(stack)
    for token in tokens:
        if token.kind == "open":
            result.append(token)
        elif token.kind == "close":
            for index in range(len(result) - 1, -1, -1):
                if result[index].name == token.name:
                    del result[index]
                    break

    return result


def _is(tokens: list[_Token], index: int, text: str) -> bool:
    if index >= len(tokens):
        return False
    token = tokens[index]

    return token.kind == "text" and token.text == text


def _boundary(
    tokens: list[_Token], start: int, end: int, *, inside_code: bool
) -> tuple[int, int] | None:
    """Return (cut, resume) at the best break in ``(start, end]``, or None."""
    for separator, paragraph in (("\n", True), ("\n", False), (" ", False)):
        for index in range(end, start, -1):
            if tokens[index].in_code != inside_code or not _is(
                tokens, index, separator
            ):
                continue
            if paragraph and not _is(tokens, index + 1, "\n"):
                continue
            resume = index + 1
            while paragraph and _is(tokens, resume, "\n"):
                resume += 1
            return index, resume

    return None


def _cut(tokens: list[_Token], start: int, end: int) -> tuple[int, int]:
    found = _boundary(tokens, start, end, inside_code=False)
    if found is not None:
        return found

    cut = end
    if tokens[cut].in_code:
        # A code block is never split when it can move whole to the next
        # chunk; only a block longer than a whole chunk is cut, at a line.
        fence = cut
        while fence > start and not (
            tokens[fence].kind == "open" and tokens[fence].in_code
        ):
            fence -= 1
        if fence > start:
            return fence, fence
        found = _boundary(tokens, start, end, inside_code=True)
        if found is not None:
            return found
    while cut - 1 > start and tokens[cut - 1].kind == "open":
        cut -= 1

    return cut, cut


def _tokens(text: str, parse_mode: ParseMode | None) -> list[_Token]:
    if parse_mode == "HTML":
        return _html_tokens(text)
    if parse_mode == "MarkdownV2":
        return _markdown_tokens(text)

    return _chars(text)


def split_text(
    text: str, *, parse_mode: ParseMode | None, limit: int = TELEGRAM_TEXT_LIMIT
) -> list[str]:
    """Split message text into chunks of at most ``limit`` UTF-16 code units.

    Breaks go at the last paragraph break that fits, else the last line
    break, else the last space, else between two characters; the break
    itself is dropped. A chunk never ends inside an HTML tag, an entity or
    an escape; HTML tags and MarkdownV2 markers open at a break are closed
    at the end of the chunk and reopened at the start of the next, and a
    MarkdownV2 code block moves whole to the next chunk unless it is longer
    than a chunk. Text that fits is returned as the only chunk. Lone
    surrogates, which no chunk could be sent with, become U+FFFD. Raises
    ValueError when ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    text = encodable(text)
    # Markup, entities and escapes show no more than they take to write, so
    # text that fits as written fits as shown: most replies stop here.
    if utf16_length(text) <= limit:
        return [text]
    tokens = _tokens(text, parse_mode)
    if sum(token.units for token in tokens) <= limit:
        return [text]

    chunks: list[str] = []
    stack: list[_Token] = []
    start = 0
    while start < len(tokens):
        end, used = start, 0
        while end < len(tokens) and used + tokens[end].units <= limit:
            used += tokens[end].units
            end += 1
        cut, resume = (end, end) if end == len(tokens) else _cut(tokens, start, end)
        if cut == start:
            cut = resume = start + 1
        body = tokens[start:cut]
        after = _apply(stack, body)
        if any(token.units for token in body):
            opening = "".join(token.text for token in stack)
            closing = "".join(token.closer for token in reversed(after))
            chunks.append(opening + "".join(token.text for token in body) + closing)
        stack = after
        start = resume

    return chunks
