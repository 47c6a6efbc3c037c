"""Callback data of inline buttons: compact, dated and always under 64 bytes.

Format: ``<generation>:<node id>:<step>:<token>``, generation and step in
base 36. The token names the button within its node:

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

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class CallbackData:
    generation: int
    node_id: str
    step: int
    token: str


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


def callback_encode(*, generation: int, node_id: str, step: int, token: str) -> str:
    """Return the callback data of a button; never raise.

    The linter checks that no button of a valid spec goes over 64 bytes.
    """
    dated = base36(generation % GENERATION_MODULUS)

    return f"{dated}:{node_id}:{base36(step)}:{token}"


def callback_max_bytes(*, node_id: str, step: int, token: str) -> int:
    """Return the size in bytes of the longest data a button can carry.

    Never raises.
    """
    longest = callback_encode(
        generation=GENERATION_MODULUS - 1, node_id=node_id, step=step, token=token
    )

    return len(longest.encode())


def callback_decode(data: str) -> CallbackData | None:
    """Read callback data; return None for data this module did not write.

    Never raises.
    """
    parts = data.split(":", 3)
    if len(parts) != 4:
        return None
    generation, node_id, step, token = parts
    generation_number, step_number = base36_parse(generation), base36_parse(step)
    if generation_number is None or step_number is None:
        return None

    return CallbackData(generation_number, node_id, step_number, token)


def generation_matches(data: CallbackData, generation: int) -> bool:
    """Tell whether callback data was written at ``generation``.

    Never raises.
    """
    return data.generation == generation % GENERATION_MODULUS
