"""``sql_exec.v1``: run one SQL statement and continue with its rows.

Entering the node emits ``RunSql`` with its parameters bound from the
conversation variables and the built-ins (``user_id``, ``chat_id``,
``locale``, ``first_name``), marks the conversation as waiting for the
result and stops. The runtime runs the statement and feeds back a
``SqlResultEvent``: its rows go into ``vars[into]`` and the conversation
continues at ``next``; an error goes to ``on_error``, or apologises and
returns to the start node.
"""

import json
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from dsl.actions import RunSql, SqlMode
from dsl.components.base import NodeBase, PathRef
from dsl.errors import SqlParseError
from dsl.events import Event, SqlResultEvent
from dsl.fields import AssignableVar, NodeId
from dsl.registry import component_register
from dsl.sql import sql_parse
from dsl.turn import Turn

MAX_TIMEOUT_MS = 30_000
MAX_ROWS = 1_000


def _bindable(value: Any) -> Any:
    """Return a value any driver binds: scalars as is, the rest as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


@component_register
class SqlExecNode(NodeBase):
    type: Literal["sql_exec.v1"]
    statement: str = Field(min_length=1, max_length=10_000)
    mode: SqlMode = "read"
    timeout_ms: int = Field(default=2_000, ge=100, le=MAX_TIMEOUT_MS)
    max_rows: int = Field(default=100, ge=1, le=MAX_ROWS)
    into: AssignableVar | None = None
    next: NodeId
    on_error: NodeId | None = None

    waits_for_input = False

    @field_validator("statement")
    @classmethod
    def _one_statement(cls, value: str) -> str:
        try:
            sql_parse(value)
        except SqlParseError as exc:
            raise PydanticCustomError("invalid_sql", str(exc)) from None

        return value

    def enter(self, turn: Turn) -> str | None:
        node_id = turn.state.node or ""
        variables = turn.variables()
        params = {
            name: _bindable(variables.get(name))
            for name in sql_parse(self.statement).param_names
        }
        turn.run_sql(
            RunSql(
                node_id=node_id,
                statement=self.statement,
                params=params,
                mode=self.mode,
                timeout_ms=self.timeout_ms,
                max_rows=self.max_rows,
                into=self.into,
            )
        )

        return None

    def handle(self, turn: Turn, event: Event) -> None:
        if not isinstance(event, SqlResultEvent):
            super().handle(turn, event)
            return

        turn.state.pending_sql = None
        if event.error is not None:
            turn.report("sql_error", event.error)
            if self.on_error is not None:
                turn.goto(self.on_error)
            else:
                turn.fail()
            return

        if self.into is not None:
            turn.state.vars[self.into] = event.rows[: self.max_rows]
        turn.goto(self.next)

    def targets(self) -> list[PathRef]:
        refs = [("next", self.next)]
        if self.on_error is not None:
            refs.append(("on_error", self.on_error))

        return refs

    def continuations(self) -> list[str]:
        return [target for _path, target in self.targets()]

    def provided_vars(self) -> list[str]:
        return [self.into] if self.into is not None else []

    def required_vars(self) -> list[PathRef]:
        return [("statement", name) for name in sql_parse(self.statement).param_names]
