"""Bots' own SQL data: provisioning and running ``sql_exec`` nodes."""

from bots.sql.outcome import SqlOutcome, SqlSchemaError
from bots.sql.services import (
    sql_applied_forget,
    sql_applied_prune,
    sql_connections_close,
    sql_deprovision,
    sql_provision,
    sql_run,
    sql_schema_apply,
    sql_schema_check,
)

__all__ = [
    "SqlOutcome",
    "SqlSchemaError",
    "sql_applied_forget",
    "sql_applied_prune",
    "sql_connections_close",
    "sql_deprovision",
    "sql_provision",
    "sql_run",
    "sql_schema_apply",
    "sql_schema_check",
]
