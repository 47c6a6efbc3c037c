"""The questions a wizard can ask: their shapes and how answers are read."""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from dsl.fields import AssignableVar, TranslationKey

MAX_TEXT_LENGTH = 4096
# A step pattern is a regular expression written by staff; matching it
# against short answers only keeps an unlucky one from running for long.
MAX_PATTERN_INPUT = 256
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y")

_INTEGER = re.compile(r"[+-]?\d{1,18}")
_NUMBER = re.compile(r"[+-]?(?:\d{1,18}(?:[.,]\d{0,18})?|[.,]\d{1,18})")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(?:\.[^@\s.]+)+")
_YES_WORDS = ("yes", "y")
_NO_WORDS = ("no", "n")


def _bounds_error(name: str) -> PydanticCustomError:
    return PydanticCustomError(
        "bounds_order", "{name} must not be less than the minimum", {"name": name}
    )


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AssignableVar
    prompt: TranslationKey
    optional: bool = False
    error: TranslationKey | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)


class TextStep(_Step):
    type: Literal["text"]
    min_length: int | None = Field(default=None, ge=0, le=MAX_TEXT_LENGTH)
    max_length: int | None = Field(default=None, ge=1, le=MAX_TEXT_LENGTH)
    pattern: str | None = Field(default=None, max_length=500)

    @field_validator("max_length")
    @classmethod
    def _max_length_over_min(
        cls, value: int | None, info: ValidationInfo
    ) -> int | None:
        minimum = info.data.get("min_length")
        if value is not None and minimum is not None and value < minimum:
            raise _bounds_error("max_length")

        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError(
                    "invalid_pattern",
                    "Not a regular expression: {error}",
                    {"error": str(exc)},
                ) from None

        return value


class IntegerStep(_Step):
    type: Literal["integer"]
    min: int | None = None
    max: int | None = None

    @field_validator("max")
    @classmethod
    def _max_over_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        minimum = info.data.get("min")
        if value is not None and minimum is not None and value < minimum:
            raise _bounds_error("max")

        return value


class NumberStep(_Step):
    type: Literal["number"]
    min: float | None = None
    max: float | None = None

    @field_validator("max")
    @classmethod
    def _max_over_min(cls, value: float | None, info: ValidationInfo) -> float | None:
        minimum = info.data.get("min")
        if value is not None and minimum is not None and value < minimum:
            raise _bounds_error("max")

        return value


class ChoiceOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=64)
    label: TranslationKey


class ChoiceStep(_Step):
    type: Literal["choice"]
    options: list[ChoiceOption] = Field(min_length=1, max_length=50)
    columns: int = Field(default=1, ge=1, le=8)

    @field_validator("options")
    @classmethod
    def _values_unique(cls, options: list[ChoiceOption]) -> list[ChoiceOption]:
        values = [option.value for option in options]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            raise PydanticCustomError(
                "duplicate_value",
                "Option values must be unique: {values}",
                {"values": ", ".join(duplicates)},
            )

        return options


class PhoneStep(_Step):
    type: Literal["phone"]


class EmailStep(_Step):
    type: Literal["email"]


class DateStep(_Step):
    type: Literal["date"]
    min: date | None = None
    max: date | None = None

    @field_validator("max")
    @classmethod
    def _max_over_min(cls, value: date | None, info: ValidationInfo) -> date | None:
        minimum = info.data.get("min")
        if value is not None and minimum is not None and value < minimum:
            raise _bounds_error("max")

        return value


class YesNoStep(_Step):
    type: Literal["yes_no"]


WizardStep = Annotated[
    TextStep
    | IntegerStep
    | NumberStep
    | ChoiceStep
    | PhoneStep
    | EmailStep
    | DateStep
    | YesNoStep,
    Field(discriminator="type"),
]


@dataclass(frozen=True)
class Invalid:
    """Why an answer was refused: a translation key and its placeholders."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)


def _parse_text(step: TextStep, text: str) -> Any:
    value = text.strip()
    if not value:
        return Invalid("bf.invalid_text")
    if step.min_length is not None and len(value) < step.min_length:
        return Invalid("bf.text_too_short", {"min": step.min_length})
    if step.max_length is not None and len(value) > step.max_length:
        return Invalid("bf.text_too_long", {"max": step.max_length})
    if step.pattern is not None and (
        len(value) > MAX_PATTERN_INPUT or re.fullmatch(step.pattern, value) is None
    ):
        return Invalid("bf.invalid_pattern")

    return value


def _check_range(
    value: Any, minimum: Any, maximum: Any, low: str, high: str, shown: Any
) -> Any:
    if minimum is not None and value < minimum:
        return Invalid(low, {"min": shown(minimum)})
    if maximum is not None and value > maximum:
        return Invalid(high, {"max": shown(maximum)})

    return value


def _parse_integer(step: IntegerStep, text: str) -> Any:
    compact = text.strip().replace(" ", "")
    if _INTEGER.fullmatch(compact) is None:
        return Invalid("bf.invalid_integer")

    return _check_range(
        int(compact),
        step.min,
        step.max,
        "bf.number_too_small",
        "bf.number_too_large",
        str,
    )


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _parse_number(step: NumberStep, text: str) -> Any:
    compact = text.strip().replace(" ", "")
    if _NUMBER.fullmatch(compact) is None:
        return Invalid("bf.invalid_number")
    value = float(compact.replace(",", "."))

    return _check_range(
        value,
        step.min,
        step.max,
        "bf.number_too_small",
        "bf.number_too_large",
        _number_text,
    )


def _parse_email(text: str) -> Any:
    value = text.strip()
    if len(value) > 254 or _EMAIL.fullmatch(value) is None:
        return Invalid("bf.invalid_email")

    return value


def _parse_date(step: DateStep, text: str) -> Any:
    value = text.strip()
    for pattern in DATE_FORMATS:
        try:
            parsed = datetime.strptime(value, pattern).date()
        except ValueError:
            continue
        checked = _check_range(
            parsed,
            step.min,
            step.max,
            "bf.date_too_early",
            "bf.date_too_late",
            date.isoformat,
        )
        return checked.isoformat() if isinstance(checked, date) else checked

    return Invalid("bf.invalid_date")


def step_bounds(step: WizardStep) -> dict[str, Any]:
    """Return the step's bounds as users see them: ``{min}`` and ``{max}``.

    Never raises.
    """
    if isinstance(step, TextStep):
        return {"min": step.min_length, "max": step.max_length}
    if isinstance(step, IntegerStep):
        return {"min": step.min, "max": step.max}
    if isinstance(step, NumberStep):
        shown = [None if v is None else _number_text(v) for v in (step.min, step.max)]
        return {"min": shown[0], "max": shown[1]}
    if isinstance(step, DateStep):
        shown = [None if v is None else v.isoformat() for v in (step.min, step.max)]
        return {"min": shown[0], "max": shown[1]}

    return {}


def answer_matches(text: str, *candidates: str) -> bool:
    """Tell whether a typed answer is one of ``candidates``, ignoring case.

    Never raises.
    """
    wanted = text.strip().casefold()

    return any(wanted == candidate.strip().casefold() for candidate in candidates)


def step_parse(step: WizardStep, text: str, label: Callable[[str], str]) -> Any:
    """Return the typed value of a text answer, or the ``Invalid`` reason.

    ``label`` translates a key, for answers typed as a button label. A phone
    step takes no typed answer. Never raises.
    """
    if isinstance(step, TextStep):
        return _parse_text(step, text)
    if isinstance(step, IntegerStep):
        return _parse_integer(step, text)
    if isinstance(step, NumberStep):
        return _parse_number(step, text)
    if isinstance(step, EmailStep):
        return _parse_email(text)
    if isinstance(step, DateStep):
        return _parse_date(step, text)
    if isinstance(step, YesNoStep):
        if answer_matches(text, label("bf.yes"), *_YES_WORDS):
            return True
        if answer_matches(text, label("bf.no"), *_NO_WORDS):
            return False
        return Invalid("bf.invalid_yes_no")
    if isinstance(step, ChoiceStep):
        for option in step.options:
            if answer_matches(text, label(option.label), option.value):
                return option.value
        return Invalid("bf.invalid_choice")

    return Invalid("bf.invalid_phone")
