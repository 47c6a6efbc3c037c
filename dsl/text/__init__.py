"""Message text: escaping, translated patterns, templates and splitting."""

from dsl.text.markup import (
    MarkdownText,
    ParseMode,
    escape,
    format_pattern,
    mark_safe,
    value_text,
)
from dsl.text.split import TELEGRAM_TEXT_LIMIT, encodable, split_text, utf16_length
from dsl.text.template import (
    MAX_OUTPUT_CHARS,
    render_template,
    template_check,
    template_literal_size,
    template_translation_keys,
)

__all__ = [
    "MAX_OUTPUT_CHARS",
    "TELEGRAM_TEXT_LIMIT",
    "MarkdownText",
    "ParseMode",
    "encodable",
    "escape",
    "format_pattern",
    "mark_safe",
    "render_template",
    "split_text",
    "template_check",
    "template_literal_size",
    "template_translation_keys",
    "utf16_length",
    "value_text",
]
