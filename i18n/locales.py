"""Locale tags: normalizing, fallback chains, negotiation and Babel lookups.

Every locale the project stores or passes around is a lowercase BCP 47 tag
joined with ``-`` (``uk``, ``pt-br``, ``zh-hans``); these helpers turn what
Telegram and staff send into that form.
"""

import functools
import re
from collections.abc import Iterable, Sequence

from babel import Locale, UnknownLocaleError

# RFC 5646 (section 4.4.1) asks implementations to accept tags of at least
# 35 characters; anything longer is not a language a bot would serve.
LOCALE_MAX_LENGTH = 35

# A 2-3 letter ISO 639 language, then subtags of 1-8 letters or digits.
LOCALE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")

FALLBACK_BABEL_LOCALE = "en"


def _subtags(tag: str) -> list[str]:
    return tag.split("-")


def _truncations(tag: str) -> list[str]:
    """``zh-hans-cn`` -> ``["zh-hans-cn", "zh-hans", "zh"]``."""
    parts = _subtags(tag)

    return ["-".join(parts[:length]) for length in range(len(parts), 0, -1)]


def _shared_subtags(first: str, second: str) -> int:
    shared = 0
    for mine, theirs in zip(_subtags(first), _subtags(second), strict=False):
        if mine != theirs:
            break
        shared += 1

    return shared


def _normalized_unique(codes: Iterable[str | None]) -> list[str]:
    tags: list[str] = []
    for code in codes:
        tag = locale_normalize(code)
        if tag is not None and tag not in tags:
            tags.append(tag)

    return tags


def locale_normalize(code: str | None) -> str | None:
    """Return ``code`` as a lowercase BCP 47 tag, or None when it is not one.

    ``en-US`` -> ``en-us``, ``pt_BR`` -> ``pt-br``, ``zh-Hans-CN`` ->
    ``zh-hans-cn``. Extension and private-use parts (from the first
    single-character subtag, as in ``de-u-co-phonebk``) are dropped: they
    tune formatting, not the language of the strings. Nothing is raised:
    missing, malformed (``x``, ``123``, ``en--``) or overlong input gives
    None.
    """
    if not isinstance(code, str):
        return None
    tag = code.strip().replace("_", "-").lower()
    if len(tag) > LOCALE_MAX_LENGTH or not LOCALE_RE.fullmatch(tag):
        return None

    parts = _subtags(tag)
    for index, part in enumerate(parts[1:], start=1):
        if len(part) == 1:
            parts = parts[:index]
            break

    return "-".join(parts)


def locale_fallback_chain(locale: str, *, default: str) -> list[str]:
    """Return the locales to try for ``locale``, most specific first.

    Each tag is followed by its shorter prefixes, then come the default and
    its prefixes, without repeats: ``pt-br`` with default ``en`` gives
    ``["pt-br", "pt", "en"]``. A malformed ``locale`` contributes nothing; a
    malformed ``default`` is left out too, so the chain may be empty when
    both are. Nothing is raised.
    """
    chain: list[str] = []
    for tag in _normalized_unique([locale, default]):
        chain.extend(prefix for prefix in _truncations(tag) if prefix not in chain)

    return chain


def locale_negotiate(
    language_code: str | None, *, available: Sequence[str], default: str
) -> str:
    """Pick the locale to serve a user whose client reports ``language_code``.

    Tags are compared in normalized form, so ``pt_BR``, ``pt-BR`` and
    ``pt-br`` are the same locale. The rule, first match wins:

    1. A missing or malformed ``language_code`` gets the default.
    2. The user's tag, then each shorter prefix of it, if available:
       ``pt-br`` gets ``pt-br``, else ``pt``.
    3. Otherwise an available locale of the same language: ``pt`` gets
       ``pt-br`` only because no ``pt`` exists (step 2 would have taken it).
       Among several, the one sharing the most leading subtags with the
       user's tag, then the first in ``available``.
    4. Otherwise the default.

    The result is normalized (the default too when it is a valid tag).
    Nothing is raised; malformed entries of ``available`` are ignored.
    """
    fallback = locale_normalize(default) or default
    requested = locale_normalize(language_code)
    if requested is None:
        return fallback

    offered = _normalized_unique(available)
    for tag in _truncations(requested):
        if tag in offered:
            return tag

    language = _subtags(requested)[0]
    relatives = [tag for tag in offered if _subtags(tag)[0] == language]
    if relatives:
        # max() keeps the first of equals, so ties go to the order of
        # ``available``.
        return max(relatives, key=lambda tag: _shared_subtags(tag, requested))

    return fallback


@functools.lru_cache(maxsize=512)
def babel_locale(locale: str) -> Locale:
    """Return Babel's locale for a tag: ``pt-br`` -> ``pt_BR``.

    A tag Babel does not know falls back to its language (``pt-xx`` ->
    ``pt``), then to English, so plural rules and formatting always have
    some locale. Nothing is raised.
    """
    tag = locale_normalize(locale)
    candidates = [tag, _subtags(tag)[0]] if tag is not None else []
    for candidate in candidates:
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError):
            continue

    return Locale.parse(FALLBACK_BABEL_LOCALE)


def telegram_language_code(locale: str) -> str | None:
    """Return the ISO 639-1 code Telegram's ``setMyCommands`` accepts.

    ``pt-br`` -> ``pt``, ``zh-hans`` -> ``zh``. None when the language has
    no two-letter code (``fil``, ``yue``) or the tag is malformed: Telegram
    rejects anything else. Several locales may map to one code (``pt-br``
    and ``pt-pt``); the caller chooses which one to send. Nothing is raised.
    """
    tag = locale_normalize(locale)
    if tag is None:
        return None
    language = _subtags(tag)[0]

    return language if len(language) == 2 else None
