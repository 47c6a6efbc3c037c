"""A language model's answer as Telegram HTML, in chunks that fit a message.

Models answer in Markdown. Everything is escaped, then fenced code blocks
become ``<pre>``, inline code ``<code>`` and ``**bold**`` ``<b>``; nothing
else of Markdown is interpreted. Chunks break between paragraphs, else
between lines, and a code block moves whole to the next chunk; only a block
longer than a whole message is cut, at a line, each part a complete block.
An answer is cut at ``MAX_ANSWER_CHARS``, so that a model that runs on
cannot flood the chat.
"""

import html
import re

from dsl.text.markup import escape
from dsl.text.split import TELEGRAM_TEXT_LIMIT, encodable, split_text, utf16_length

_FENCE = re.compile(
    r"^```[ \t]*([A-Za-z0-9_+#.-]*)[^\n]*\n(.*?)(?:^```[ \t]*$|\Z)", re.M | re.S
)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_TAG = re.compile(r"<[^>]+>")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
# Four messages, as the output cap of a template; what is past it is dropped.
MAX_ANSWER_CHARS = 16_384
_CUT_MARK = " …"


def _shown_length(markup: str) -> int:
    return utf16_length(html.unescape(_TAG.sub("", markup)))


def _inline(text: str) -> str:
    # Telegram refuses a message with anything nested in code, so bold is
    # only looked for between code spans.
    pieces: list[str] = []
    position = 0
    for match in _INLINE_CODE.finditer(text):
        pieces.append(
            _BOLD.sub(r"<b>\1</b>", escape(text[position : match.start()], "HTML"))
        )
        pieces.append(f"<code>{escape(match.group(1), 'HTML')}</code>")
        position = match.end()
    pieces.append(_BOLD.sub(r"<b>\1</b>", escape(text[position:], "HTML")))

    return "".join(pieces)


def _code_blocks(language: str, body: str, limit: int) -> list[str]:
    """Return the block as ``<pre>`` blocks of at most ``limit`` shown units."""
    opening = (
        f'<pre><code class="language-{escape(language, "HTML")}">'
        if language
        else "<pre>"
    )
    closing = "</code></pre>" if language else "</pre>"
    blocks: list[str] = []
    lines: list[str] = []
    for line in body.rstrip("\n").split("\n"):
        candidate = "\n".join([*lines, line])
        if lines and utf16_length(candidate) > limit:
            blocks.append("\n".join(lines))
            lines = [line]
        else:
            lines.append(line)
    blocks.append("\n".join(lines))

    pieces: list[str] = []
    for block in blocks:
        # A single line longer than a message is cut between characters.
        for part in split_text(block, parse_mode=None, limit=limit):
            pieces.append(opening + escape(part, "HTML") + closing)

    return pieces


def _blocks(text: str, limit: int) -> list[str]:
    """Return paragraphs and code blocks as HTML, each no longer than ``limit``."""
    blocks: list[str] = []
    position = 0
    for match in _FENCE.finditer(text):
        blocks += _paragraphs(text[position : match.start()], limit)
        if match.group(2).strip("\n"):
            blocks += _code_blocks(match.group(1), match.group(2), limit)
        position = match.end()
    blocks += _paragraphs(text[position:], limit)

    return blocks


def _paragraphs(text: str, limit: int) -> list[str]:
    blocks: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip("\n")):
        if not paragraph.strip():
            continue
        markup = _inline(paragraph.rstrip())
        blocks += split_text(markup, parse_mode="HTML", limit=limit)

    return blocks


def answer_cut(text: str) -> str:
    """Return the answer cut at ``MAX_ANSWER_CHARS``, ending in "…" if it was."""
    if len(text) > MAX_ANSWER_CHARS:
        return text[:MAX_ANSWER_CHARS].rstrip() + _CUT_MARK

    return text


def answer_chunks(text: str, *, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Return a model's answer as HTML message texts of at most ``limit`` units.

    Paragraphs are joined while they fit; a chunk never ends inside a tag
    or a code block (a block longer than ``limit`` becomes several complete
    blocks, cut at lines). An answer that is only whitespace gives no chunk;
    one over ``MAX_ANSWER_CHARS`` characters is cut there and ends in "…".
    Raises ValueError when ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    text = answer_cut(text)

    chunks: list[str] = []
    current = ""
    for block in _blocks(encodable(text), limit):
        joined = f"{current}\n\n{block}" if current else block
        if current and _shown_length(joined) > limit:
            chunks.append(current)
            current = block
        else:
            current = joined
    if current:
        chunks.append(current)

    return chunks
