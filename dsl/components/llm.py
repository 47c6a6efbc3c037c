"""``llm.v1``: answer the user with a language model.

Entering the node renders its system and user prompts (sandboxed templates
over ``vars``, ``user``, ``locale`` and ``t()``, as in ``reply_template.v1``
but without escaping), emits ``RequestLlm`` and waits. The runtime asks the
model in a worker and feeds back an ``LlmResultEvent``: the answer is sent
(Markdown code and bold as HTML, split under Telegram's limit), stored in
``vars[into]`` when set, and the conversation continues at ``next``; an
error sends the ``fallback`` text instead and continues the same way.
Without ``next`` the conversation returns to the start node.

While the node waits, messages are answered with "one moment, please";
``/start`` and ``/cancel`` abandon the wait and the late answer is dropped.
"""

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from dsl.actions import LlmMessage, RequestLlm
from dsl.components.base import ContinuesAtNext, NodeBase, PathRef
from dsl.errors import TemplateRenderError
from dsl.events import Event, LlmResultEvent
from dsl.fields import AssignableVar, NodeId, TranslationKey
from dsl.registry import component_register
from dsl.text import render_template, template_check, template_translation_keys
from dsl.text.answer import answer_chunks
from dsl.turn import Turn

DEFAULT_FALLBACK = "bf.llm.fallback"
# Telegram shows the typing indicator for five seconds or until a message
# arrives; a budget far over a minute would leave the user guessing.
MAX_BUDGET_SECONDS = 120.0
MAX_CACHE_TTL_SECONDS = 7 * 24 * 3600
MAX_PROMPT_CHARS = 20_000


def _checked_template(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_prompt", "A prompt needs some text.")
    try:
        template_check(value, parse_mode=None)
    except TemplateRenderError as exc:
        raise PydanticCustomError("invalid_template", str(exc)) from None

    return value


@component_register
class LlmNode(ContinuesAtNext, NodeBase):
    type: Literal["llm.v1"]
    system: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(default=None, min_length=1, max_length=100)
    # Strict: a JSON true or "20" here is a mistake, not a number to coerce.
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, strict=True)
    max_tokens: int | None = Field(default=None, ge=1, le=32_768, strict=True)
    budget_seconds: float = Field(
        default=20.0, ge=1.0, le=MAX_BUDGET_SECONDS, strict=True
    )
    cache_ttl_seconds: int = Field(
        default=0, ge=0, le=MAX_CACHE_TTL_SECONDS, strict=True
    )
    thinking: TranslationKey | None = None
    typing: bool = Field(default=True, strict=True)
    fallback: TranslationKey = DEFAULT_FALLBACK
    into: AssignableVar | None = None
    next: NodeId | None = None

    waits_for_input = False

    @field_validator("system", "prompt")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return None if value is None else _checked_template(value)

    def _render(self, turn: Turn, source: str) -> str:
        ctx = turn.ctx
        return render_template(
            source,
            variables=turn.state.vars,
            translator=ctx.translator,
            parse_mode=None,
            user={"id": ctx.user_id, "first_name": ctx.user_first_name},
            locale=ctx.locale,
        )

    def enter(self, turn: Turn) -> str | None:
        messages: list[LlmMessage] = []
        try:
            if self.system is not None:
                system = self._render(turn, self.system).strip()
                if system:
                    messages.append(LlmMessage(role="system", content=system))
            prompt = self._render(turn, self.prompt).strip()
        except TemplateRenderError as exc:
            turn.report("template_error", str(exc))
            turn.fail()
            return None
        if not prompt:
            turn.report("empty_prompt", "The prompt rendered to nothing.")
            return self._answer(turn, None)
        messages.append(LlmMessage(role="user", content=prompt))

        thinking = turn.text(self.thinking) if self.thinking is not None else None
        turn.request_llm(
            RequestLlm(
                node_id=turn.state.node or "",
                request_key=turn.request_key(),
                messages=messages,
                model=self.model,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                budget_seconds=self.budget_seconds,
                cache_ttl_seconds=self.cache_ttl_seconds,
                thinking_text=thinking if thinking and thinking.strip() else None,
                typing=self.typing,
            )
        )

        return None

    def handle(self, turn: Turn, event: Event) -> None:
        if not isinstance(event, LlmResultEvent):
            super().handle(turn, event)
            return

        turn.state.pending_llm = None
        answer = event.text if event.error is None else None
        target = self._answer(turn, answer)
        if target is not None:
            turn.goto(target)

    def _answer(self, turn: Turn, answer: str | None) -> str | None:
        """Send the answer, or the fallback without one; return where to go."""
        chunks = answer_chunks(answer) if answer is not None else []
        if chunks:
            for chunk in chunks:
                turn.send(chunk)
        else:
            turn.send(turn.text(self.fallback))
        if self.into is not None:
            turn.state.vars[self.into] = answer if chunks else None

        return self.continue_at_next(turn)

    def translation_refs(self) -> list[PathRef]:
        refs: list[PathRef] = []
        if self.system is not None:
            refs += [("system", key) for key in template_translation_keys(self.system)]
        refs += [("prompt", key) for key in template_translation_keys(self.prompt)]
        if self.thinking is not None:
            refs.append(("thinking", self.thinking))
        refs.append(("fallback", self.fallback))

        return refs

    def provided_vars(self) -> list[str]:
        return [self.into] if self.into is not None else []
