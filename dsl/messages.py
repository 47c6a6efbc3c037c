"""Built-in texts of the spec language and the lookup of any translated text.

A bot's own translation of a ``bf.*`` key always wins over these defaults;
they only keep system messages readable for a bot that never defined them.
"""

# The Ukrainian texts are Cyrillic on purpose, and the labels use typographic
# quotes and arrows, which the ambiguous-character check would flag.

from collections.abc import Mapping
from typing import Any

from dsl.context import Translator
from dsl.text.markup import ParseMode, format_pattern

DEFAULT_LOCALE = "en"

BUILTIN_TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "bf.invalid_text": "Please send your answer as a text message.",
        "bf.text_too_short": (
            "That is too short: please send at least {min} characters."
        ),
        "bf.text_too_long": "That is too long: please send at most {max} characters.",
        "bf.invalid_integer": "Please send a whole number, like 3.",
        "bf.invalid_number": "Please send a number, like 2.5.",
        "bf.number_too_small": "Please send a number of at least {min}.",
        "bf.number_too_large": "Please send a number of at most {max}.",
        "bf.invalid_choice": "Please choose one of the options below.",
        "bf.invalid_phone": "Please share your phone number with the button below.",
        "bf.foreign_contact": "Please share your own contact, not someone else's.",
        "bf.invalid_email": "Please send a valid email address, like name@example.com.",
        "bf.invalid_date": "Please send a date like 2025-12-31 or 31.12.2025.",
        "bf.date_too_early": "Please send a date no earlier than {min}.",
        "bf.date_too_late": "Please send a date no later than {max}.",
        "bf.invalid_yes_no": "Please answer yes or no.",
        "bf.invalid_pattern": "That doesn't look right. Please try again.",
        "bf.cannot_skip": "This question can't be skipped.",
        "bf.cannot_go_back": "This is the first question.",
        "bf.too_many_attempts": "Too many attempts. Let's start over.",
        "bf.cancelled": "Cancelled.",
        "bf.button_inactive": "This button is no longer active.",
        "bf.use_buttons": "Please use the buttons below.",
        "bf.unsupported": "Sorry, I can't handle this kind of message.",
        "bf.unknown_command": "Sorry, I don't know this command.",
        "bf.please_wait": "One moment, please…",
        "bf.error": "Sorry, something went wrong. Let's start over.",
        "bf.restarted": "This bot has been updated. Let's start over.",
        "bf.back": "« Back",
        "bf.cancel": "✖ Cancel",
        "bf.skip": "Skip »",
        "bf.prev": "‹ Previous",
        "bf.next": "Next ›",
        "bf.yes": "Yes",
        "bf.no": "No",
        "bf.share_contact": "📱 Share my phone number",
        "bf.llm.thinking": "Thinking…",
        "bf.llm.fallback": (
            "Sorry, I can't answer that right now. Please try again later."
        ),
    },
    "uk": {
        "bf.invalid_text": "Будь ласка, надішліть відповідь текстовим повідомленням.",
        "bf.text_too_short": "Закоротко: надішліть щонайменше {min} симв.",
        "bf.text_too_long": "Задовго: надішліть щонайбільше {max} симв.",
        "bf.invalid_integer": "Будь ласка, надішліть ціле число, наприклад 3.",
        "bf.invalid_number": "Будь ласка, надішліть число, наприклад 2.5.",
        "bf.number_too_small": "Будь ласка, надішліть число не менше за {min}.",
        "bf.number_too_large": "Будь ласка, надішліть число не більше за {max}.",
        "bf.invalid_choice": "Будь ласка, оберіть один із варіантів нижче.",
        "bf.invalid_phone": "Будь ласка, поділіться номером телефону кнопкою нижче.",
        "bf.foreign_contact": "Будь ласка, надішліть власний контакт, а не чужий.",
        "bf.invalid_email": (
            "Будь ласка, надішліть правильну адресу e-mail, наприклад name@example.com."
        ),
        "bf.invalid_date": "Будь ласка, надішліть дату як 2025-12-31 або 31.12.2025.",
        "bf.date_too_early": "Будь ласка, надішліть дату не раніше за {min}.",
        "bf.date_too_late": "Будь ласка, надішліть дату не пізніше за {max}.",
        "bf.invalid_yes_no": "Будь ласка, дайте відповідь «так» або «ні».",
        "bf.invalid_pattern": "Здається, щось не так. Спробуйте ще раз.",
        "bf.cannot_skip": "Це питання не можна пропустити.",
        "bf.cannot_go_back": "Це перше питання.",
        "bf.too_many_attempts": "Забагато спроб. Почнімо спочатку.",
        "bf.cancelled": "Скасовано.",
        "bf.button_inactive": "Ця кнопка вже неактивна.",
        "bf.use_buttons": "Будь ласка, скористайтеся кнопками нижче.",
        "bf.unsupported": "Вибачте, я не вмію обробляти такі повідомлення.",
        "bf.unknown_command": "Вибачте, я не знаю такої команди.",
        "bf.please_wait": "Хвилинку, будь ласка…",
        "bf.error": "Вибачте, щось пішло не так. Почнімо спочатку.",
        "bf.restarted": "Бот оновився. Почнімо спочатку.",
        "bf.back": "« Назад",
        "bf.cancel": "✖ Скасувати",
        "bf.skip": "Пропустити »",
        "bf.prev": "‹ Попередні",
        "bf.next": "Наступні ›",
        "bf.yes": "Так",
        "bf.no": "Ні",
        "bf.share_contact": "📱 Поділитися номером телефону",
        "bf.llm.thinking": "Думаю…",
        "bf.llm.fallback": (
            "Вибачте, зараз я не можу на це відповісти. Спробуйте пізніше."
        ),
    },
}


def builtin_pattern(key: str, locale: str) -> str | None:
    """Return the built-in text of ``key`` for ``locale``; never raise.

    A regional locale (``uk-ua``) uses its language's texts, and a language
    without built-in texts uses English.
    """
    language = locale.replace("_", "-").split("-")[0].lower()
    for candidate in (locale, language, DEFAULT_LOCALE):
        texts = BUILTIN_TEXTS.get(candidate)
        if texts is not None and key in texts:
            return texts[key]

    return None


def builtin_has(key: str, locale: str) -> bool:
    """Tell whether ``key`` has a built-in text that ``locale`` would use.

    Never raises.
    """
    return builtin_pattern(key, locale) is not None


def translate(
    translator: Translator,
    key: str,
    *,
    count: int | float | None = None,
    params: Mapping[str, Any] | None = None,
    parse_mode: ParseMode | None = None,
) -> str:
    """Return the text of ``key`` with its placeholders filled; never raise.

    The bot's pattern wins, then the built-in text, then the key itself (so
    a missing translation shows up as its key, which the linter warns of).
    ``count`` picks the plural form and is also the ``{count}`` placeholder.
    """
    pattern = translator.pattern(key, count)
    if pattern is None:
        pattern = builtin_pattern(key, translator.locale) or key
    values = dict(params or {})
    if count is not None:
        values.setdefault("count", count)

    return format_pattern(pattern, values, parse_mode)
