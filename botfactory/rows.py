"""Whole rows read and written in plain SQL, for the few hot-path statements.

Building a statement through the ORM costs more CPU than PostgreSQL spends
running it; an update of a known conversation makes a handful of them. The
helpers here keep the ORM's models and field conversions (encrypted
fields, JSON, time zones) and skip only the query compiler: the SQL of
each model is built once per process.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class _Shape:
    table: str
    columns: str
    names: tuple[str, ...]
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...]], ...]
    fields: "tuple[models.Field[Any, Any], ...]"


_shapes: dict[type[models.Model], _Shape] = {}


def _quoted(field: "models.Field[Any, Any]") -> str:
    assert field.column is not None
    return connection.ops.quote_name(field.column)


def _shape(model: type[models.Model]) -> _Shape:
    shape = _shapes.get(model)
    if shape is not None:
        return shape

    fields = tuple(model._meta.concrete_fields)
    table = connection.ops.quote_name(model._meta.db_table)
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = connection.ops.get_db_converters(column) + field.get_db_converters(
            connection
        )
        if found:
            converters.append((index, tuple(found)))
    shape = _Shape(
        table=table,
        columns=", ".join(f"{table}.{_quoted(field)}" for field in fields),
        names=tuple(field.attname for field in fields),
        converters=tuple(converters),
        fields=fields,
    )
    _shapes[model] = shape

    return shape


def _instance(model: type[M], shape: _Shape, row: Sequence[Any]) -> M:
    values = list(row[: len(shape.names)])
    for index, converters in shape.converters:
        value = values[index]
        for convert in converters:
            value = convert(value, shape.fields[index], connection)
        values[index] = value

    return model.from_db(connection.alias, shape.names, values)


def for_update() -> str:
    """`` FOR UPDATE`` where the database locks rows so (not SQLite, which
    locks the whole database for a write transaction)."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def columns(model: type[models.Model]) -> str:
    """The model's columns, qualified by its table, for a SELECT list."""
    return _shape(model).columns


def table(model: type[models.Model]) -> str:
    return _shape(model).table


def row_fetch(
    model: type[M], sql: str, params: Sequence[Any]
) -> tuple[M, tuple[Any, ...]] | None:
    """Run ``sql``, whose SELECT list starts with ``columns(model)``.

    Return the first row as an instance, with the row's extra values after
    the model's columns, or None when there is no row.
    """
    shape = _shape(model)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None

    return _instance(model, shape, row), tuple(row[len(shape.names) :])


def row_instance(model: type[M], row: Sequence[Any]) -> M:
    """An instance from ``row``, whose values start with ``columns(model)``."""
    return _instance(model, _shape(model), row)


@functools.lru_cache(maxsize=64)
def _insert_sql(
    model: type[models.Model], count: int
) -> "tuple[tuple[models.Field[Any, Any], ...], str]":
    pk = model._meta.pk
    assert pk is not None
    shape = _shape(model)
    fields = tuple(field for field in shape.fields if field is not pk)
    names = ", ".join(_quoted(field) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {shape.table} ({names}) VALUES "
        + ", ".join([row] * count)
        + f" RETURNING {_quoted(pk)}"
    )

    return fields, sql


def rows_insert(objects: Sequence[models.Model]) -> None:
    """Insert unsaved instances of one model in one statement; set their pks.

    Field defaults and ``auto_now_add`` apply as in ``bulk_create``.
    """
    if not objects:
        return

    model = type(objects[0])
    fields, sql = _insert_sql(model, len(objects))
    params: list[Any] = []
    for obj in objects:
        for field in fields:
            value = field.pre_save(obj, add=True)
            params.append(field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [found[0] for found in cursor.fetchall()]
    # PostgreSQL returns the rows of a multi-row VALUES in their order.
    for obj, new_id in zip(objects, ids, strict=True):
        obj.pk = new_id
        obj._state.adding = False
        obj._state.db = connection.alias


def _assignments(
    model: type[models.Model], values: dict[str, Any]
) -> tuple[str, list[Any]]:
    meta = model._meta
    assignments = []
    params: list[Any] = []
    for name, value in values.items():
        field = meta.get_field(name)
        assert isinstance(field, models.Field)
        assignments.append(f"{_quoted(field)} = %s")
        params.append(field.get_db_prep_save(value, connection))

    return ", ".join(assignments), params


def row_update(obj: models.Model, names: Sequence[str]) -> int:
    """Write the named fields of a saved instance; return the rows changed.

    ``auto_now`` fields among them get the current time, as in ``save``.
    """
    values = {}
    for name in names:
        field = obj._meta.get_field(name)
        assert isinstance(field, models.Field)
        values[name] = field.pre_save(obj, add=False)

    assert obj._meta.pk is not None
    where = f"{_quoted(obj._meta.pk)} = %s"

    return rows_update(type(obj), values, where, [obj.pk])


def rows_update(
    model: type[models.Model],
    values: dict[str, Any],
    where: str,
    params: Sequence[Any],
) -> int:
    """``UPDATE`` the model's table: set ``values`` (field names) where
    ``where`` holds; return the rows changed."""
    assignments, values_params = _assignments(model, values)
    sql = f"UPDATE {_shape(model).table} SET {assignments} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values_params, *params])
        return int(cursor.rowcount)


@contextlib.contextmanager
def one_round_trip() -> Iterator[None]:
    """Send the statements run inside together, where the database can.

    On PostgreSQL this is psycopg's pipeline mode: each statement is sent
    without waiting, and the first result asked for (a fetch) waits for them
    all, so writes followed by an ``INSERT ... RETURNING`` cost one round
    trip. A ``rowcount`` read inside before such a fetch is -1: nothing has
    answered yet. An error surfaces at that fetch, or on leaving, as
    Django's error.
    """
    if connection.vendor != "postgresql":
        yield
        return

    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.pipeline():
        yield
