"""A whole bot as one JSON file, so that bots can live in git and move.

The file holds the bot's settings, its draft spec, its live spec, its
translations, its transcripts and the DDL of its own SQL tables (one text
per database backend; never their rows). Left out by design: the token, the
webhook secrets and the SQL password (secrets stay where they were set),
the Telegram username (it follows the token), ids, times, cache revisions,
and the history of published versions: versions are records of what ran on
one server, with its authors and times, and conversations there stay
pinned to them; another server starts its own history from the live spec.

The file is written with sorted keys and an indent of two, ending in a
newline, so that the same bot always gives the same bytes and a change
diffs well.
"""

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import F

from botfactory.errors import ApplicationError
from botfactory.parsers import json_unstorable_path
from bots.models import Bot, Transcript
from bots.observability import spec_reload_record
from bots.services.access import (
    Level,
    bot_access_grant,
    bot_access_level,
    user_may_add_bot,
)
from bots.services.audit import Action, audit_record
from bots.services.bots import bot_sql_schema_apply
from bots.services.specs import SpecRejectedError, spec_check, spec_publish
from bots.services.transcripts import transcript_steps_problem
from bots.sql import SqlSchemaError, sql_deprovision
from i18n.locales import locale_normalize
from i18n.models import Translation
from i18n.services import TranslationInvalidError
from i18n.transfer import translations_export, translations_import

logger = logging.getLogger(__name__)

FORMAT_NAME = "botfactory.bot"
FORMAT_VERSION = 2
# Version 1 files have no "sql_schema": they import as bots without one.
FORMAT_VERSIONS_READ = (1, 2)
# A bot file is a spec, its texts and its tests: far below this.
FILE_MAX_BYTES = 5 * 1024 * 1024

_TOP_FIELDS = {
    "format",
    "format_version",
    "bot",
    "draft_spec",
    "live_spec",
    "translations",
    "transcripts",
    "sql_schema",
}
_SQL_SCHEMA_FIELDS = {"postgresql", "sqlite"}
_BOT_FIELDS = {"slug", "name", "default_locale", "is_active", "allows_sql_writes"}
_TRANSCRIPT_FIELDS = {"name", "locale", "steps", "is_draft"}
_NAME_MAX = 100
_LOCALE_MAX = 16
_SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,64}")


class BotTransferError(ApplicationError):
    """A bot file is refused; ``fields`` maps paths in the file to messages."""

    def __init__(
        self, fields: dict[str, list[str]], *, code: str = "bot_file_invalid"
    ) -> None:
        message = "The bot file is refused: " + "; ".join(
            f"{path}: {text}" for path, texts in fields.items() for text in texts
        )
        super().__init__(message, code=code, extra={"fields": fields})
        self.fields = fields


@dataclass(frozen=True)
class BotImportResult:
    bot: Bot
    created: bool
    published_version: int | None
    translations: int
    transcripts: int


def _transcripts_export(bot: Bot) -> list[dict[str, Any]]:
    return [
        {
            "name": transcript.name,
            "locale": transcript.locale,
            "steps": transcript.steps,
            "is_draft": transcript.is_draft,
        }
        for transcript in bot.transcripts.order_by("name")
    ]


def bot_export(*, bot: Bot) -> dict[str, Any]:
    """Return the bot as the data of a bot file (never a secret).

    Nothing is raised beyond database errors.
    """
    live = bot.live_version.source if bot.live_version is not None else None
    translations = translations_export(bot=bot)

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bot": {
            "slug": bot.slug,
            "name": bot.name,
            "default_locale": bot.default_locale,
            "is_active": bot.is_active,
            "allows_sql_writes": bot.allows_sql_writes,
        },
        "draft_spec": bot.draft_spec,
        "live_spec": live,
        "translations": {"locales": translations["locales"]},
        "transcripts": _transcripts_export(bot),
        "sql_schema": {
            "postgresql": bot.sql_schema_postgresql,
            "sqlite": bot.sql_schema_sqlite,
        },
    }


def bot_file_dumps(*, data: dict[str, Any]) -> str:
    """Return a bot file's text: stable, so that git shows only real changes."""
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _pairs_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = [name for name, _value in pairs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"The name {name!r} appears twice in one object.")

    return dict(pairs)


def bot_file_loads(*, content: bytes) -> dict[str, Any]:
    """Read a bot file's bytes into data for ``bot_import``.

    Raises BotTransferError (code ``bot_file_unreadable``) for a file too
    large, not UTF-8, not JSON, with a name twice in one object, or not an
    object.
    """

    def refused(message: str) -> BotTransferError:
        return BotTransferError({"file": [message]}, code="bot_file_unreadable")

    if len(content) > FILE_MAX_BYTES:
        raise refused(f"The file is larger than {FILE_MAX_BYTES // 2**20} MB.")
    try:
        text = content.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise refused(f"The file is not UTF-8 (byte {exc.start + 1}).") from None
    try:
        data = json.loads(text, object_pairs_hook=_pairs_unique)
    except json.JSONDecodeError as exc:
        raise refused(
            f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except (ValueError, RecursionError) as exc:
        raise refused(str(exc) or "The JSON is nested too deeply.") from None
    if not isinstance(data, dict):
        raise refused("A bot file is a JSON object.")

    return data


class _Problems:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, []).append(message)

    def unknown(self, data: dict[str, Any], known: set[str], prefix: str) -> None:
        for name in sorted(set(data) - known):
            self.add(f"{prefix}{name}", "Unknown field.")


@dataclass(frozen=True)
class _Checked:
    slug: str
    settings: dict[str, Any]
    draft_spec: dict[str, Any]
    live_spec: dict[str, Any] | None
    translations: dict[str, Any]
    transcripts: list[dict[str, Any]]
    sql_schema: dict[str, str]

    @property
    def sql_schema_here(self) -> str:
        """The DDL for this server's database backend."""
        dialect = "postgresql" if django_settings.IS_POSTGRESQL else "sqlite"

        return self.sql_schema[dialect]


def _format_check(data: dict[str, Any]) -> int:
    if data.get("format") != FORMAT_NAME:
        raise BotTransferError(
            {"format": [f"Not a bot file: format must be {FORMAT_NAME!r}."]},
            code="bot_file_format",
        )
    version = data.get("format_version")
    if version not in FORMAT_VERSIONS_READ or isinstance(version, bool):
        readable = ", ".join(str(number) for number in FORMAT_VERSIONS_READ)
        raise BotTransferError(
            {
                "format_version": [
                    f"Format version {version!r} is not supported; this server "
                    f"reads versions {readable}."
                ]
            },
            code="bot_file_version",
        )

    return int(version)


def _sql_schema_check(raw: Any, problems: _Problems) -> dict[str, str]:
    if not isinstance(raw, dict):
        problems.add("sql_schema", "Give an object with postgresql and sqlite.")
        return {"postgresql": "", "sqlite": ""}
    problems.unknown(raw, _SQL_SCHEMA_FIELDS, "sql_schema.")

    checked: dict[str, str] = {}
    for dialect in sorted(_SQL_SCHEMA_FIELDS):
        text = raw.get(dialect)
        if not isinstance(text, str):
            problems.add(f"sql_schema.{dialect}", "Give the DDL as text (or '').")
            text = ""
        checked[dialect] = text

    return checked


def _settings_check(
    raw: Any, problems: _Problems, slug: str | None
) -> tuple[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        problems.add("bot", "Give an object with the bot's settings.")
        return "", {}
    problems.unknown(raw, _BOT_FIELDS, "bot.")

    chosen = slug if slug is not None else raw.get("slug")
    where = "slug" if slug is not None else "bot.slug"
    if not isinstance(chosen, str) or not _SLUG_RE.fullmatch(chosen):
        problems.add(where, "A slug is 1-64 letters, digits, hyphens or underscores.")
        chosen = ""

    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= _NAME_MAX:
        problems.add("bot.name", f"A name is 1-{_NAME_MAX} characters.")
    locale = raw.get("default_locale")
    if not isinstance(locale, str) or locale_normalize(locale) is None:
        problems.add("bot.default_locale", "Give a locale tag such as en or pt-BR.")
    for flag in ("is_active", "allows_sql_writes"):
        if not isinstance(raw.get(flag), bool):
            problems.add(f"bot.{flag}", "Give true or false.")

    settings = {
        "name": name,
        "default_locale": locale,
        "is_active": raw.get("is_active"),
        "allows_sql_writes": raw.get("allows_sql_writes"),
    }

    return chosen, settings


def _spec_check(
    source: Any, path: str, problems: _Problems, *, optional: bool
) -> dict[str, Any] | None:
    if source is None and optional:
        return None
    # An empty draft means "nothing written yet", as in the admin.
    if source == {} and path == "draft_spec":
        return {}
    try:
        spec_check(bot=None, source=source)
    except SpecRejectedError as exc:
        for inner, texts in exc.fields.items():
            for text in texts:
                problems.add(f"{path}.{inner}" if inner != "$" else path, text)
        return None

    return dict(source)


def _transcripts_check(raw: Any, problems: _Problems) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        problems.add("transcripts", "Give a list of transcripts.")
        return []

    checked: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        path = f"transcripts[{index}]"
        if not isinstance(item, dict):
            problems.add(path, "Give an object with name, locale, steps and is_draft.")
            continue
        problems.unknown(item, _TRANSCRIPT_FIELDS, f"{path}.")
        name, locale = item.get("name"), item.get("locale")
        if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX:
            problems.add(f"{path}.name", f"A name is 1-{_NAME_MAX} characters.")
        elif name in names:
            problems.add(f"{path}.name", "Another transcript has this name.")
        else:
            names.add(name)
        if not isinstance(locale, str) or not 0 < len(locale) <= _LOCALE_MAX:
            problems.add(f"{path}.locale", "Give the transcript's locale.")
        if not isinstance(item.get("is_draft", False), bool):
            problems.add(f"{path}.is_draft", "Give true or false.")
        problem = transcript_steps_problem(item.get("steps"))
        if problem:
            problems.add(f"{path}.steps", problem)
        checked.append(
            {
                "name": name,
                "locale": locale,
                "steps": item.get("steps"),
                "is_draft": item.get("is_draft", False),
            }
        )

    return checked


def _translations_locales(checked: _Checked) -> list[str]:
    codes = [checked.settings["default_locale"]]
    for spec in (checked.draft_spec, checked.live_spec or {}):
        codes += [spec.get("default_locale") or "", *(spec.get("locales") or [])]

    return list(
        dict.fromkeys(
            tag for tag in (locale_normalize(code) for code in codes if code) if tag
        )
    )


def _translations_check(raw: Any, checked: _Checked, problems: _Problems) -> None:
    if not isinstance(raw, dict):
        problems.add("translations", "Give an object with the bot's locales.")
        return
    try:
        # Nothing is written: only the shape and the texts are checked.
        translations_import(
            bot=_NoBot(),
            data=raw,
            apply=False,
            locales=_translations_locales(checked),
        )
    except TranslationInvalidError as exc:
        for inner, texts in exc.fields.items():
            for text in texts:
                problems.add(f"translations.{inner}" if inner else "translations", text)


@dataclass(frozen=True)
class _NoBot:
    """A bot without rows, to check translations against nothing stored."""

    pk: None = None
    slug: str = ""


def bot_file_check(*, data: dict[str, Any], slug: str | None = None) -> _Checked:
    """Check a whole bot file without writing anything.

    Raises BotTransferError with every problem found by path: code
    ``bot_file_format`` or ``bot_file_version`` for a file of another kind
    or version (nothing else is checked then), ``bot_file_invalid`` else.
    """
    version = _format_check(data)
    unstorable = json_unstorable_path(data)
    if unstorable is not None:
        raise BotTransferError(
            {
                unstorable or "file": [
                    "A NUL character, a lone surrogate or a number out of range "
                    "cannot be stored."
                ]
            }
        )

    problems = _Problems()
    known = _TOP_FIELDS if version >= 2 else _TOP_FIELDS - {"sql_schema"}
    problems.unknown(data, known, "")
    for name in sorted(known - set(data)):
        problems.add(name, "Missing field.")
    slug, settings = _settings_check(data.get("bot"), problems, slug)
    draft = _spec_check(data.get("draft_spec"), "draft_spec", problems, optional=False)
    live = _spec_check(data.get("live_spec"), "live_spec", problems, optional=True)
    transcripts = _transcripts_check(data.get("transcripts", []), problems)
    sql_schema = (
        _sql_schema_check(data.get("sql_schema", {}), problems)
        if version >= 2 and "sql_schema" in data
        else {"postgresql": "", "sqlite": ""}
    )
    checked = _Checked(
        slug=slug,
        settings=settings,
        draft_spec=draft or {},
        live_spec=live,
        translations=data.get("translations") or {},
        transcripts=transcripts,
        sql_schema=sql_schema,
    )
    if "translations" in data:
        _translations_check(data["translations"], checked, problems)
    if problems.fields:
        raise BotTransferError(problems.fields)

    return checked


def _sql_schema_differs(checked: _Checked, bot: Bot | None) -> bool:
    stored = {
        "postgresql": bot.sql_schema_postgresql if bot is not None else "",
        "sqlite": bot.sql_schema_sqlite if bot is not None else "",
    }

    return checked.sql_schema != stored


def _access_check(
    *, author: Any, bot: Bot | None, publishes: bool, sql_schema_changes: bool
) -> None:
    if author is None:
        return
    # The DDL runs as the runtime's own database user, not the bot's
    # sandboxed role: only those who could run any SQL may supply it.
    if sql_schema_changes and not author.is_superuser:
        raise BotTransferError(
            {
                "sql_schema": [
                    "Only a superuser may import a bot file whose SQL schema "
                    "differs from the bot's."
                ]
            },
            code="sql_schema_forbidden",
        )
    if bot is None:
        if not user_may_add_bot(user=author):
            raise PermissionDenied
        return
    needed = Level.PUBLISH if publishes else Level.EDIT
    if bot_access_level(user=author, bot=bot) < needed:
        raise PermissionDenied


def _translations_replace(bot: Bot, data: dict[str, Any]) -> int:
    report = translations_import(bot=bot, data=data, apply=True)
    # The file is the whole truth: texts it does not hold are removed.
    kept = {
        (locale_normalize(code) or code, key)
        for code, entries in data["locales"].items()
        for key in entries
    }
    stale = [
        pk
        for pk, locale, key in Translation.objects.filter(bot=bot).values_list(
            "pk", "locale", "key"
        )
        if (locale, key) not in kept
    ]
    Translation.objects.filter(pk__in=stale).delete()

    return len(report.added) + len(report.changed) + report.unchanged


def _transcripts_replace(bot: Bot, transcripts: list[dict[str, Any]]) -> None:
    names = [item["name"] for item in transcripts]
    Transcript.objects.filter(bot=bot).exclude(name__in=names).delete()
    for item in transcripts:
        Transcript.objects.update_or_create(
            bot=bot,
            name=item["name"],
            defaults={
                "locale": item["locale"],
                "steps": item["steps"],
                "is_draft": item["is_draft"],
            },
        )


def _sql_schema_stage(*, existing: Bot | None, checked: _Checked) -> Bot:
    """Store the file's SQL schema on the bot and apply it, committed.

    A bot's tests run its SQL nodes on its own database connection, which
    sees only committed tables; so the schema is applied before the rest of
    the import, and a new bot is created here (inactive until the rest
    commits). Raises BotTransferError ``sql_schema_invalid`` (nothing of it
    stays then) or ``slug_taken``.
    """
    bot = existing or Bot(
        slug=checked.slug,
        name=checked.settings["name"],
        default_locale=checked.settings["default_locale"],
        is_active=False,
    )
    try:
        with transaction.atomic():
            bot.allows_sql_writes = checked.settings["allows_sql_writes"]
            bot.sql_schema_postgresql = checked.sql_schema["postgresql"]
            bot.sql_schema_sqlite = checked.sql_schema["sqlite"]
            bot.save()
            bot_sql_schema_apply(bot=bot)
    except IntegrityError:
        raise _slug_taken(checked.slug, "bot.slug") from None
    except SqlSchemaError as exc:
        if existing is None and bot.pk is not None:
            # An SQLite file is not part of the rolled-back transaction.
            sql_deprovision(bot=bot)
        dialect = "postgresql" if django_settings.IS_POSTGRESQL else "sqlite"
        raise BotTransferError(
            {f"sql_schema.{dialect}": [exc.message]}, code="sql_schema_invalid"
        ) from exc

    return bot


def _slug_taken(slug: str, where: str) -> BotTransferError:
    return BotTransferError(
        {
            where: [
                f"A bot with slug {slug!r} exists; choose another slug "
                "or replace that bot."
            ]
        },
        code="slug_taken",
    )


def _staged_remove(bot: Bot) -> None:
    # TODO: a crash before this runs leaves the staged bot, inactive and
    # without a live version; deleting it in the admin removes it all.
    sql_deprovision(bot=bot)
    Bot.objects.filter(pk=bot.pk).delete()


def bot_import(
    *,
    data: dict[str, Any],
    slug: str | None = None,
    author: Any = None,
    replace: bool = False,
) -> BotImportResult:
    """Create a bot from a bot file, or with ``replace`` update the one of its slug.

    Everything is checked first, then written in one transaction: the
    settings, the draft, the translations and transcripts (those the file
    does not hold are removed), and, when the file has a live spec that
    differs from the bot's, a publish of it (which runs the transcripts).
    When the file carries DDL for this server's database that the bot does
    not have yet, it is stored and applied first, in its own transaction,
    because the transcripts' SQL nodes see only committed tables: if the
    rest then fails, a new bot is removed again, while a replaced bot keeps
    the new schema (and SQL-writes setting). Tokens and secrets are never
    touched; a new bot starts in demo mode.
    ``slug`` overrides the file's. With ``author`` (a member of staff; a
    command passes none) creating needs the add permission, updating EDIT
    and publishing PUBLISH, and a changed SQL schema a superuser. Audited
    as an import.

    Raises BotTransferError (``slug_taken`` when the slug exists and
    ``replace`` is off, ``sql_schema_forbidden``, ``sql_schema_invalid``
    with the database's message), SpecRejectedError or
    TranscriptsFailedError from the publish, and PermissionDenied; nothing
    changes then (but for a replaced bot's schema, see above).
    """
    checked = bot_file_check(data=data, slug=slug)
    existing = Bot.objects.filter(slug=checked.slug).first()
    if existing is not None and not replace:
        raise _slug_taken(checked.slug, "bot.slug" if slug is None else "slug")
    live = existing.live_version if existing is not None else None
    publishes = checked.live_spec is not None and (
        live is None or live.source != checked.live_spec
    )
    schema_differs = _sql_schema_differs(checked, existing)
    _access_check(
        author=author,
        bot=existing,
        publishes=publishes,
        sql_schema_changes=schema_differs,
    )

    staged: Bot | None = None
    if checked.sql_schema_here.strip() and (
        schema_differs
        or existing is None
        or existing.allows_sql_writes != checked.settings["allows_sql_writes"]
    ):
        staged = _sql_schema_stage(existing=existing, checked=checked)
    written = False
    try:
        result = _import_write(
            checked=checked,
            existing=existing,
            staged=staged,
            author=author,
            publishes=publishes,
        )
        written = True
    finally:
        if not written and existing is None and staged is not None:
            _staged_remove(staged)

    return result


def _import_write(
    *,
    checked: _Checked,
    existing: Bot | None,
    staged: Bot | None,
    author: Any,
    publishes: bool,
) -> BotImportResult:
    with transaction.atomic():
        bot = staged or existing or Bot(slug=checked.slug)
        for name, value in checked.settings.items():
            setattr(bot, name, value)
        bot.draft_spec = checked.draft_spec
        bot.sql_schema_postgresql = checked.sql_schema["postgresql"]
        bot.sql_schema_sqlite = checked.sql_schema["sqlite"]
        bot.save()
        if existing is None and author is not None and not author.is_superuser:
            bot_access_grant(bot=bot, user=author, level=Level.PUBLISH, actor=author)

        translations = _translations_replace(bot, checked.translations)
        _transcripts_replace(bot, checked.transcripts)
        Bot.objects.filter(pk=bot.pk).update(cache_revision=F("cache_revision") + 1)
        number = None
        if publishes:
            assert checked.live_spec is not None
            version, _warnings = spec_publish(
                bot=bot,
                source=checked.live_spec,
                author=author,
                message="Imported from a bot file",
            )
            number = version.number
        audit_record(
            action=Action.IMPORT,
            bot=bot,
            actor=author,
            actor_label="" if author is not None else "command:import_bot",
            detail={
                "created": existing is None,
                "published_version": number,
                "translations": translations,
                "transcripts": len(checked.transcripts),
            },
        )
        spec_reload_record()
    bot.refresh_from_db()
    logger.info("Bot %s imported (created: %s).", bot.pk, existing is None)

    return BotImportResult(
        bot=bot,
        created=existing is None,
        published_version=number,
        translations=translations,
        transcripts=len(checked.transcripts),
    )
