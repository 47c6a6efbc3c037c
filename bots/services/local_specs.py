"""The spec a studio "Try it" conversation runs: a chosen version or the draft.

Such a conversation is keyed by a chat id that no Telegram chat has
(theirs fit 52 bits): one per member of staff and spec version, the draft
being number 0. The id alone says which spec it runs, so an update of it
and an LLM answer that comes back to it later both run that spec, never
the live one, and the draft runs without being published.
"""

import re

from botfactory.errors import ApplicationError
from bots.models import Bot, SpecVersion
from bots.selectors import spec_get_by_id
from dsl import Spec, SpecInvalidError, spec_validate

DRAFT_NUMBER = 0
# Above the conversation tests' users (2**60 up to 2**61) and any Telegram
# id; staff ids take the bits above the version number.
LOCAL_CHAT_ID_MIN = 2**61
_NUMBER_BITS = 20
_STAFF_ID_MAX = 2**40
_NUMBER_RE = re.compile(r"[1-9][0-9]{0,5}")


class VersionUnknownError(ApplicationError):
    pass


def spec_version_number_parse(*, bot: Bot, version: str) -> int:
    """Return the number ``version`` names: 0 for ``draft``, or a version's.

    ``live`` is the live version's number. Raises VersionUnknownError for
    anything else.
    """
    if version == "draft":
        return DRAFT_NUMBER
    if version == "live":
        live = (
            SpecVersion.objects.filter(pk=bot.live_version_id)
            .values_list("number", flat=True)
            .first()
            if bot.live_version_id is not None
            else None
        )
        if live is None:
            raise VersionUnknownError(
                "The bot has no published version.", code="no_live_version"
            )
        return live
    is_number = _NUMBER_RE.fullmatch(version) is not None
    if is_number and bot.versions.filter(number=int(version)).exists():
        return int(version)

    raise VersionUnknownError(
        f"There is no version {version[:20]!r}.", code="unknown_version"
    )


def local_chat_id(*, staff_id: int, number: int) -> int:
    """Return the chat id of one member of staff trying one spec version.

    Raises ValueError for an id or a number out of range.
    """
    if not 0 < staff_id < _STAFF_ID_MAX or not 0 <= number < 2**_NUMBER_BITS:
        raise ValueError("The staff id or the version number is out of range.")

    return LOCAL_CHAT_ID_MIN + (staff_id << _NUMBER_BITS) + number


def local_chat_number(chat_id: int) -> int | None:
    """Return the version number a chat id tries (0: the draft), or None."""
    if (
        not LOCAL_CHAT_ID_MIN
        <= chat_id
        < LOCAL_CHAT_ID_MIN + (_STAFF_ID_MAX << _NUMBER_BITS)
    ):
        return None

    return (chat_id - LOCAL_CHAT_ID_MIN) % 2**_NUMBER_BITS


def local_spec_pin(*, bot: Bot, chat_id: int) -> tuple[int | None, Spec] | None:
    """Return (version id, spec) a "Try it" chat runs, or None for any other.

    The draft has no version id. None too when the draft is no longer valid
    or the version is gone, so the conversation falls back to the live
    version. Raises DatabaseError subclasses when the database fails.
    """
    number = local_chat_number(chat_id)
    if number is None:
        return None
    if number == DRAFT_NUMBER:
        try:
            return None, spec_validate(bot.draft_spec)
        except SpecInvalidError:
            return None

    version_id = (
        SpecVersion.objects.filter(bot=bot, number=number)
        .values_list("pk", flat=True)
        .first()
    )
    if version_id is None:
        return None

    return version_id, spec_get_by_id(version_id=version_id)
