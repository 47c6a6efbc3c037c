"""Callback data of inline buttons: compact, dated and always under 64 bytes.

Format: ``<generation>[.<owner>]:<node id>:<step>:<token>``, generation and
step in base 36. In a group or supergroup, where each member has a
conversation of their own, ``owner`` tags whose message it is: four base-36
digits hashed from the member's user id. Private chats carry no tag. The
token names the button within its node:

- ``b`` + 8 hex digits: a menu button, hashed from its whole definition so
  that a button changed by a publish never passes for the old one;
- ``i<n>``: the n-th generated menu button, ``p<n>``: a menu page;
- ``o<value>``: a wizard choice option, ``y``/``n``: a yes/no answer,
  ``s``/``k``/``x``: a wizard's skip, back and cancel buttons.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Telegram's limit on callback_data.
MAX_CALLBACK_BYTES = 64
# Generations are carried modulo this, so they never take more than six
# base-36 digits.
GENERATION_MODULUS = 36**6
# Base-36 digits of an owner tag: two members of one group share a tag about
# once in 1.7 million pairs, and then only their own buttons mix up.
OWNER_TAG_LENGTH = 4

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class CallbackData:
    generation: int
    node_id: str
    step: int
    token: str
    owner: str | None = None


def base36(number: int) -> str:
    """Return a non-negative number in base 36 (``0-9a-z``).

    Never raises.
    """
    if number == 0:
        return "0"
    digits = []
    while number:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])

    return "".join(reversed(digits))


def base36_parse(text: str) -> int | None:
    """Return the number ``base36`` wrote, or None for anything else.

    Never raises.
    """
    if not text or not all(char in _DIGITS for char in text):
        return None

    return int(text, 36)


def button_token(definition: Any) -> str:
    """Return the stable token of a menu button from its JSON definition.

    Never raises.
    """
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))

    return "b" + hashlib.sha256(canonical.encode()).hexdigest()[:8]


def owner_tag(user_id: int) -> str:
    """Return the tag that marks a button as ``user_id``'s own.

    Never raises.
    """
    digest = hashlib.sha256(str(user_id).encode()).digest()
    number = int.from_bytes(digest[:8], "big") % 36**OWNER_TAG_LENGTH

    return base36(number).rjust(OWNER_TAG_LENGTH, "0")


def callback_encode(
    *, generation: int, node_id: str, step: int, token: str, owner: str | None = None
) -> str:
    """Return the callback data of a button; never raise.

    ``owner`` is an ``owner_tag``, or None where a chat has one conversation.
    The linter checks that no button of a valid spec goes over 64 bytes.
    """
    dated = base36(generation % GENERATION_MODULUS)
    if owner is not None:
        dated = f"{dated}.{owner}"

    return f"{dated}:{node_id}:{base36(step)}:{token}"


def callback_max_bytes(*, node_id: str, step: int, token: str) -> int:
    """Return the size in bytes of the longest data a button can carry.

    That is the data of a late generation in a group, owner tag included.
    Never raises.
    """
    longest = callback_encode(
        generation=GENERATION_MODULUS - 1,
        node_id=node_id,
        step=step,
        token=token,
        owner="z" * OWNER_TAG_LENGTH,
    )

    # A lone surrogate in a spec's value must not crash the linter.
    return len(longest.encode("utf-8", "surrogatepass"))


def callback_decode(data: str) -> CallbackData | None:
    """Read callback data; return None for data this module did not write.

    Never raises.
    """
    parts = data.split(":", 3)
    if len(parts) != 4:
        return None
    dated, node_id, step, token = parts
    generation, dot, owner = dated.partition(".")
    generation_number, step_number = base36_parse(generation), base36_parse(step)
    if generation_number is None or step_number is None:
        return None
    if dot and (len(owner) != OWNER_TAG_LENGTH or base36_parse(owner) is None):
        return None

    return CallbackData(
        generation_number, node_id, step_number, token, owner if dot else None
    )


def generation_matches(data: CallbackData, generation: int) -> bool:
    """Tell whether callback data was written at ``generation``.

    Never raises.
    """
    return data.generation == generation % GENERATION_MODULUS
