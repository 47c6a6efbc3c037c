"""The ``wizard.v1`` node: asking its steps in turn and moving between them.

A button answers only the prompt it came with: the same step, the same run
of the wizard (the conversation's generation, which changes each time the
wizard is entered) and, in a group, the member who was asked. Any other
press is answered "no longer active" and changes nothing.
"""

from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from dsl.callback import generation_matches
from dsl.components.base import NodeBase, PathRef
from dsl.components.wizard.steps import (
    ChoiceStep,
    Invalid,
    PhoneStep,
    WizardStep,
    YesNoStep,
    answer_matches,
    step_bounds,
    step_parse,
)
from dsl.events import (
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    Event,
    TextEvent,
    UnsupportedEvent,
)
from dsl.fields import NodeId
from dsl.paths import path_join
from dsl.registry import component_register
from dsl.state import ConversationState
from dsl.text import escape
from dsl.turn import Turn

MAX_STEPS = 50

_CONTROL_COMMANDS = {"skip": "s", "back": "k", "cancel": "x"}


@component_register
class WizardNode(NodeBase):
    type: Literal["wizard.v1"]
    steps: list[WizardStep] = Field(min_length=1, max_length=MAX_STEPS)
    next: NodeId
    on_cancel: NodeId | None = None

    @field_validator("steps")
    @classmethod
    def _names_unique(cls, steps: list[WizardStep]) -> list[WizardStep]:
        names = [step.name for step in steps]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise PydanticCustomError(
                "duplicate_name",
                "Step names must be unique: {names}",
                {"names": ", ".join(duplicates)},
            )

        return steps

    # Asking

    def position_valid(self, state: ConversationState) -> bool:
        return 0 <= state.step < len(self.steps) and all(
            0 <= index < len(self.steps) for index in state.history
        )

    def _token_data(self, turn: Turn, token: str) -> str:
        return turn.button_data(token, step=turn.state.step)

    def _controls(self, turn: Turn, step: WizardStep) -> list[tuple[str, str]]:
        """Return (label key, token) of the control buttons the step offers."""
        controls = [("bf.back", "k")] if turn.state.history else []
        if step.optional:
            controls.append(("bf.skip", "s"))
        controls.append(("bf.cancel", "x"))

        return controls

    def _inline_markup(self, turn: Turn, step: WizardStep) -> dict[str, Any]:
        rows: list[list[dict[str, Any]]] = []
        if isinstance(step, ChoiceStep):
            buttons = [
                {
                    "text": turn.label(option.label),
                    "callback_data": self._token_data(turn, f"o{option.value}"),
                }
                for option in step.options
            ]
            rows += [
                buttons[i : i + step.columns]
                for i in range(0, len(buttons), step.columns)
            ]
        if isinstance(step, YesNoStep):
            rows.append(
                [
                    {
                        "text": turn.label("bf.yes"),
                        "callback_data": self._token_data(turn, "y"),
                    },
                    {
                        "text": turn.label("bf.no"),
                        "callback_data": self._token_data(turn, "n"),
                    },
                ]
            )
        rows.append(
            [
                {
                    "text": turn.label(key),
                    "callback_data": self._token_data(turn, token),
                }
                for key, token in self._controls(turn, step)
            ]
        )

        return {"inline_keyboard": rows}

    def _contact_markup(self, turn: Turn, step: WizardStep) -> dict[str, Any]:
        share = {"text": turn.label("bf.share_contact"), "request_contact": True}
        controls = [
            {"text": turn.label(key)} for key, _token in self._controls(turn, step)
        ]

        return {
            "keyboard": [[share], controls],
            "resize_keyboard": True,
            "one_time_keyboard": True,
        }

    def _ask(self, turn: Turn, notice: str | None = None) -> None:
        step = self.steps[turn.state.step]
        text = turn.text(step.prompt)
        if notice:
            text = f"{notice}\n\n{text}"
        # Buttons work in groups; a typed answer must be a reply to be seen.
        needs_buttons = isinstance(step, (ChoiceStep, YesNoStep))
        if turn.ctx.is_group and not needs_buttons:
            if turn.ctx.user_id is not None:
                name = escape(turn.ctx.user_first_name or str(turn.ctx.user_id), "HTML")
                mention = f'<a href="tg://user?id={turn.ctx.user_id}">{name}</a>'
                text = f"{mention}, {text}"
            markup = {"force_reply": True, "selective": True}
        elif isinstance(step, PhoneStep):
            markup = self._contact_markup(turn, step)
        else:
            markup = self._inline_markup(turn, step)
        turn.send(text, reply_markup=markup)

    def reprompt(self, turn: Turn, notice: str) -> None:
        self._ask(turn, notice)

    # Moving between steps

    def enter(self, turn: Turn) -> str | None:
        for step in self.steps:
            turn.state.vars.pop(step.name, None)
        self._ask(turn)

        return None

    def _accept(self, turn: Turn, value: Any) -> None:
        state = turn.state
        state.vars[self.steps[state.step].name] = value
        state.history.append(state.step)
        state.step += 1
        state.attempts = 0
        if state.step >= len(self.steps):
            turn.goto(self.next)
        else:
            self._ask(turn)

    def _cancel(self, turn: Turn, key: str) -> None:
        turn.send(turn.text(key))
        turn.goto(self.on_cancel or turn.spec.start)

    def _refuse(self, turn: Turn, step: WizardStep, invalid: Invalid) -> None:
        turn.state.attempts += 1
        if turn.state.attempts >= step.max_attempts:
            self._cancel(turn, "bf.too_many_attempts")
            return
        params = {**step_bounds(step), **invalid.params}
        self._ask(turn, turn.text(step.error or invalid.key, params=params))

    def _control(self, turn: Turn, token: str) -> None:
        state = turn.state
        step = self.steps[state.step]
        if token == "x":
            self._cancel(turn, "bf.cancelled")
        elif token == "k" and state.history:
            state.step = state.history.pop()
            state.attempts = 0
            self._ask(turn)
        elif token == "k":
            self._ask(turn, turn.text("bf.cannot_go_back"))
        elif step.optional:
            self._accept(turn, None)
        else:
            self._ask(turn, turn.text("bf.cannot_skip"))

    # Events

    def handle_command(self, turn: Turn, event: CommandEvent) -> bool:
        token = _CONTROL_COMMANDS.get(event.command)
        if token is None:
            return False
        self._control(turn, token)

        return True

    def handle(self, turn: Turn, event: Event) -> None:
        step = self.steps[turn.state.step]
        if isinstance(event, CallbackEvent):
            self._press(turn, step, event)
        elif isinstance(event, TextEvent):
            self._text(turn, step, event.text)
        elif isinstance(event, ContactEvent) and isinstance(step, PhoneStep):
            self._contact(turn, step, event)
        elif isinstance(event, (ContactEvent, UnsupportedEvent)):
            self._ask(turn, turn.text("bf.unsupported"))

    def _press(self, turn: Turn, step: WizardStep, event: CallbackEvent) -> None:
        state = turn.state
        data = turn.pressed(event)
        if (
            data is None
            or data.step != state.step
            or not generation_matches(data, state.generation)
        ):
            turn.notice("bf.button_inactive")
            return

        token = data.token
        offered = {token for _key, token in self._controls(turn, step)}
        if token in offered:
            self._control(turn, token)
        elif isinstance(step, YesNoStep) and token in ("y", "n"):
            self._accept(turn, token == "y")
        elif isinstance(step, ChoiceStep) and token.startswith("o"):
            values = [option.value for option in step.options]
            if token[1:] in values:
                self._accept(turn, token[1:])
            else:
                turn.notice("bf.button_inactive")
        else:
            turn.notice("bf.button_inactive")

    def _text(self, turn: Turn, step: WizardStep, text: str) -> None:
        if isinstance(step, PhoneStep):
            # The contact keyboard's control buttons arrive as their labels.
            for key, token in self._controls(turn, step):
                if answer_matches(text, turn.label(key)):
                    self._control(turn, token)
                    return
            self._refuse(turn, step, Invalid("bf.invalid_phone"))
            return

        value = step_parse(step, text, turn.label)
        if isinstance(value, Invalid):
            self._refuse(turn, step, value)
        else:
            self._accept(turn, value)

    def _contact(self, turn: Turn, step: PhoneStep, event: ContactEvent) -> None:
        own = (
            event.contact_user_id is not None
            and event.contact_user_id == turn.ctx.user_id
        )
        if not own:
            self._refuse(turn, step, Invalid("bf.foreign_contact"))
            return
        self._accept(turn, event.phone_number.strip())

    # Description for the linter

    def targets(self) -> list[PathRef]:
        refs = [("next", self.next)]
        if self.on_cancel is not None:
            refs.append(("on_cancel", self.on_cancel))

        return refs

    def translation_refs(self) -> list[PathRef]:
        refs: list[PathRef] = []
        for index, step in enumerate(self.steps):
            refs.append((path_join("steps", index, "prompt"), step.prompt))
            if step.error is not None:
                refs.append((path_join("steps", index, "error"), step.error))
            if isinstance(step, ChoiceStep):
                refs += [
                    (path_join("steps", index, "options", o, "label"), option.label)
                    for o, option in enumerate(step.options)
                ]

        return refs

    def callback_refs(self) -> list[tuple[str, int, str]]:
        refs: list[tuple[str, int, str]] = []
        for index, step in enumerate(self.steps):
            refs.append((path_join("steps", index), index, "x"))
            if isinstance(step, ChoiceStep):
                refs += [
                    (
                        path_join("steps", index, "options", o, "value"),
                        index,
                        f"o{option.value}",
                    )
                    for o, option in enumerate(step.options)
                ]

        return refs

    def provided_vars(self) -> list[str]:
        return [step.name for step in self.steps]
