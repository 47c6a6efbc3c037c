"""``reply_template.v1``: send a message rendered from a sandboxed template.

The template sees ``vars``, ``user`` (``id``, ``first_name``), ``locale``
and ``t(key, count=None, **params)``. Output longer than a message is sent
as several messages; output that is only whitespace sends nothing. A
template that fails while rendering sends a polite error instead.

After the reply the conversation goes to ``next``. Without ``next`` it
returns to the start node without sending it again: the message the user
came from (typically the start menu) keeps working, and the next message
or press is handled by the start node.
"""

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from dsl.components.base import ContinuesAtNext, NodeBase, PathRef
from dsl.errors import TemplateRenderError
from dsl.fields import NodeId
from dsl.issues import LintIssue
from dsl.registry import component_register
from dsl.text import (
    MAX_OUTPUT_CHARS,
    ParseMode,
    render_template,
    template_check,
    template_literal_size,
    template_translation_keys,
)
from dsl.turn import Turn


@component_register
class ReplyTemplateNode(ContinuesAtNext, NodeBase):
    type: Literal["reply_template.v1"]
    template: str = Field(min_length=1)
    parse_mode: ParseMode | None = "HTML"
    next: NodeId | None = None

    waits_for_input = False

    @field_validator("template")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            template_check(value)
        except TemplateRenderError as exc:
            raise PydanticCustomError("invalid_template", str(exc)) from None

        return value

    def enter(self, turn: Turn) -> str | None:
        ctx = turn.ctx
        try:
            text = render_template(
                self.template,
                variables=turn.state.vars,
                translator=ctx.translator,
                parse_mode=self.parse_mode,
                user={"id": ctx.user_id, "first_name": ctx.user_first_name},
                locale=ctx.locale,
            )
        except TemplateRenderError as exc:
            turn.report("template_error", str(exc))
            turn.fail()
            return None

        # Block tags leave newlines at the ends that Telegram would trim.
        turn.send(text.strip("\n"), parse_mode=self.parse_mode)

        return self.continue_at_next(turn)

    def translation_refs(self) -> list[PathRef]:
        return [("template", key) for key in template_translation_keys(self.template)]

    def lint(self) -> list[LintIssue]:
        size = template_literal_size(self.template)
        if size <= MAX_OUTPUT_CHARS:
            return []

        return [
            LintIssue(
                path="template",
                message=(
                    f"The template's own text is {size} characters; its output "
                    f"cannot exceed {MAX_OUTPUT_CHARS}."
                ),
                code="text_too_long",
                severity="error",
            )
        ]
