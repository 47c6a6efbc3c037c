"""``menu.v1``: a text with inline buttons that go to nodes or set variables.

Buttons come from ``rows`` and, optionally, from a list variable
(``items``: one button per element, such as SQL rows). Long lists are
paginated: generated buttons ten to a page unless ``page_size`` says
otherwise, static rows only with ``page_size``; the static rows stay under
generated buttons on every page. A press on a menu message that leads to a
menu (or another page) edits that message in place.

A press is applied only when the conversation is at the pressed button's
node, the button still exists unchanged (its token hashes its whole
definition) and, in a group, it was shown to the member who pressed it; a
generated button also needs the message to be the one shown since the node
was last entered, since the list may have changed. Any other press is
answered "no longer active" and changes nothing.
"""

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from dsl.callback import base36, base36_parse, button_token, generation_matches
from dsl.components.base import NodeBase, PathRef
from dsl.events import (
    CallbackEvent,
    ContactEvent,
    Event,
    TextEvent,
    UnsupportedEvent,
)
from dsl.fields import AssignableVar, JsonScalar, NodeId, TranslationKey, VarName
from dsl.issues import LintIssue
from dsl.paths import path_join
from dsl.registry import component_register
from dsl.turn import Turn

# Generated buttons shown per page when the menu sets no page size.
DEFAULT_ITEMS_PAGE_SIZE = 10
# Telegram refuses an inline keyboard of more than 100 buttons.
MAX_KEYBOARD_BUTTONS = 100
MAX_ROW_BUTTONS = 8

_Keyboard = list[list[dict[str, Any]]]


class MenuButton(BaseModel):
    """A button: ``goto`` a node and/or ``set`` variables, or a ``url``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: TranslationKey
    goto: NodeId | None = None
    set: dict[AssignableVar, JsonScalar] = Field(default_factory=dict)
    url: str | None = Field(
        default=None, pattern=r"^(https?|tg)://\S+$", max_length=2048
    )

    @model_validator(mode="after")
    def _one_purpose(self) -> "MenuButton":
        if self.url is not None and (self.goto is not None or self.set):
            raise PydanticCustomError(
                "button_purpose", "A url button cannot also goto or set"
            )
        if self.url is None and self.goto is None and not self.set:
            raise PydanticCustomError(
                "button_purpose", "A button needs goto, set or url"
            )

        return self


class MenuItems(BaseModel):
    """Buttons generated from a list variable, one per element.

    The label's placeholders are the element's fields (an element that is
    not an object is ``{value}``); the pressed element's ``value`` field (or
    the element itself) is stored into ``into`` before going to ``goto``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: VarName
    label: TranslationKey
    value: str = Field(min_length=1, max_length=64)
    into: AssignableVar
    goto: NodeId


@component_register
class MenuNode(NodeBase):
    type: Literal["menu.v1"]
    text: TranslationKey
    rows: list[
        Annotated[list[MenuButton], Field(min_length=1, max_length=MAX_ROW_BUTTONS)]
    ] = Field(default_factory=list)
    items: MenuItems | None = None
    page_size: int | None = Field(default=None, ge=1, le=20)

    @model_validator(mode="after")
    def _has_buttons(self) -> "MenuNode":
        if not self.rows and self.items is None:
            raise PydanticCustomError("menu_empty", "A menu needs rows or items")

        return self

    # Rendering

    def _elements(self, turn: Turn) -> list[Any]:
        if self.items is None:
            return []
        elements = turn.state.vars.get(self.items.source)

        return elements if isinstance(elements, list) else []

    def _item_rows(self, turn: Turn, start: int, stop: int) -> _Keyboard:
        if self.items is None:
            return []
        rows: _Keyboard = []
        for index, element in enumerate(self._elements(turn)[start:stop], start):
            fields = element if isinstance(element, dict) else {"value": element}
            data = turn.button_data(f"i{base36(index)}")
            label = turn.label(self.items.label, params=fields)
            rows.append([{"text": label, "callback_data": data}])

        return rows

    def _static_rows(self, turn: Turn) -> _Keyboard:
        rows: _Keyboard = []
        for row in self.rows:
            buttons: list[dict[str, Any]] = []
            for button in row:
                label = turn.label(button.label)
                if button.url is not None:
                    buttons.append({"text": label, "url": button.url})
                    continue
                data = turn.button_data(_button_token(button))
                buttons.append({"text": label, "callback_data": data})
            rows.append(buttons)

        return rows

    def _page_size(self) -> int | None:
        if self.items is not None:
            return self.page_size or DEFAULT_ITEMS_PAGE_SIZE

        return self.page_size

    def _page_count(self, pageable: int) -> int:
        size = self._page_size()

        return max(1, math.ceil(pageable / size)) if size else 1

    def _keyboard(self, turn: Turn) -> dict[str, Any] | None:
        static = self._static_rows(turn)
        count = len(self._elements(turn)) if self.items else len(static)
        size = self._page_size()
        pages = self._page_count(count)
        page = min(max(turn.state.page, 0), pages - 1)
        start, stop = (page * size, (page + 1) * size) if size else (0, count)
        # Only the page shown is rendered: a list can hold a thousand rows.
        if self.items is not None:
            shown, fixed = self._item_rows(turn, start, stop), static
        else:
            shown, fixed = static[start:stop], []

        navigation: list[dict[str, Any]] = []
        for target, key in ((page - 1, "bf.prev"), (page + 1, "bf.next")):
            if 0 <= target < pages:
                data = turn.button_data(f"p{base36(target)}")
                navigation.append({"text": turn.label(key), "callback_data": data})
        keyboard = shown + ([navigation] if navigation else []) + fixed

        return {"inline_keyboard": keyboard} if keyboard else None

    def _render(self, turn: Turn) -> None:
        turn.show(turn.text(self.text), reply_markup=self._keyboard(turn))

    # Behaviour

    def enter(self, turn: Turn) -> str | None:
        self._render(turn)

        return None

    def handle(self, turn: Turn, event: Event) -> None:
        if isinstance(event, CallbackEvent):
            self._press(turn, event)
        elif isinstance(event, (TextEvent, ContactEvent)):
            self.reprompt(turn, turn.text("bf.use_buttons"))
        elif isinstance(event, UnsupportedEvent):
            self.reprompt(turn, turn.text("bf.unsupported"))

    def reprompt(self, turn: Turn, notice: str) -> None:
        turn.send(notice, reply_markup=self._keyboard(turn))

    def _press(self, turn: Turn, event: CallbackEvent) -> None:
        data = turn.pressed(event)
        if data is None or data.step != 0:
            turn.notice("bf.button_inactive")
            return

        token = data.token
        if token.startswith("p"):
            page = base36_parse(token[1:])
            pageable = len(self._elements(turn)) if self.items else len(self.rows)
            if page is None or page >= self._page_count(pageable):
                turn.notice("bf.button_inactive")
                return
            turn.state.page = page
            turn.allow_edit(event)
            self._render(turn)
        elif token.startswith("i"):
            index = base36_parse(token[1:])
            elements = self._elements(turn)
            fresh = generation_matches(data, turn.state.generation)
            if (
                self.items is None
                or index is None
                or index >= len(elements)
                or not fresh
            ):
                turn.notice("bf.button_inactive")
                return
            element = elements[index]
            value = (
                element.get(self.items.value) if isinstance(element, dict) else element
            )
            turn.state.vars[self.items.into] = value
            turn.allow_edit(event)
            turn.goto(self.items.goto)
        else:
            button = self._button(token)
            if button is None:
                turn.notice("bf.button_inactive")
                return
            turn.state.vars.update(button.set)
            turn.allow_edit(event)
            if button.goto is not None:
                turn.goto(button.goto)
                return
            # Variables changed: buttons generated from them are redated.
            turn.state.generation += 1
            self._render(turn)

    def _button(self, token: str) -> MenuButton | None:
        for row in self.rows:
            for button in row:
                if button.url is None and _button_token(button) == token:
                    return button

        return None

    # Description for the linter

    def targets(self) -> list[PathRef]:
        refs = [
            (path_join("rows", r, b, "goto"), button.goto)
            for r, row in enumerate(self.rows)
            for b, button in enumerate(row)
            if button.goto is not None
        ]
        if self.items is not None:
            refs.append(("items.goto", self.items.goto))

        return refs

    def translation_refs(self) -> list[PathRef]:
        refs = [("text", self.text)]
        refs += [
            (path_join("rows", r, b, "label"), button.label)
            for r, row in enumerate(self.rows)
            for b, button in enumerate(row)
        ]
        if self.items is not None:
            refs.append(("items.label", self.items.label))

        return refs

    def callback_refs(self) -> list[tuple[str, int, str]]:
        refs = [
            (path_join("rows", r, b), 0, _button_token(button))
            for r, row in enumerate(self.rows)
            for b, button in enumerate(row)
            if button.url is None
        ]
        if self.items is not None:
            # Up to the longest list SQL can return.
            refs.append(("items", 0, f"i{base36(999)}"))

        return refs

    def provided_vars(self) -> list[str]:
        names = [name for row in self.rows for button in row for name in button.set]
        if self.items is not None:
            names.append(self.items.into)

        return names

    def _most_buttons_shown(self) -> int:
        static = [len(row) for row in self.rows]
        size = self._page_size()
        if self.items is not None and size is not None:
            return size + sum(static) + 2
        if size is None or len(static) <= size:
            return sum(static)

        return max(sum(static[i : i + size]) for i in range(0, len(static), size)) + 2

    def lint(self) -> list[LintIssue]:
        issues: list[LintIssue] = []
        shown = self._most_buttons_shown()
        if shown > MAX_KEYBOARD_BUTTONS:
            issues.append(
                LintIssue(
                    path="rows",
                    message=(
                        f"A page can show {shown} buttons; Telegram allows "
                        f"{MAX_KEYBOARD_BUTTONS}. Set a smaller page_size."
                    ),
                    code="keyboard_too_large",
                    severity="error",
                )
            )

        return issues


def _button_token(button: MenuButton) -> str:
    return button_token(button.model_dump(mode="json"))
