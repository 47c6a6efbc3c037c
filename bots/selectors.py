import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.conf import settings

from botfactory import rows
from botfactory.metrics import CACHE_REQUESTS
from bots.models import Bot, SpecVersion
from dsl import Spec, spec_validate

# Parsed specs, kept once per distinct content (bots copied from one
# template share theirs), and which content each version holds. Versions
# are immutable, so entries never go stale and only need a bound: a
# demo-sized spec takes about 25 KB parsed, a version entry a few bytes.
_VERSIONS_CACHED = 16384
_spec_by_content: "OrderedDict[str, Spec]" = OrderedDict()
_content_by_version: "OrderedDict[int, str]" = OrderedDict()
_spec_lock = threading.Lock()


def bot_get(*, bot_ref: str | int) -> Bot | None:
    """Return a bot by primary key or slug, or None."""
    text = str(bot_ref)
    if text.isdigit():
        return Bot.objects.filter(pk=int(text)).first()

    return Bot.objects.filter(slug=text).first()


def bot_get_by_id(*, bot_id: int) -> Bot | None:
    """Return a bot by primary key, or None: the webhook's first statement."""
    found = rows.row_fetch(
        Bot,
        f"SELECT {rows.columns(Bot)} FROM {rows.table(Bot)} WHERE id = %s",
        [bot_id],
    )

    return found[0] if found is not None else None


def spec_get(*, version: SpecVersion) -> Spec:
    """Return the parsed spec of a version, from the per-process cache."""
    return spec_get_by_id(version_id=version.pk, source=lambda: version.source)


def spec_get_by_id(
    *, version_id: int, source: Callable[[], dict[str, Any]] | None = None
) -> Spec:
    """Return the parsed spec of a version id, reading its row only on a miss.

    The hot path (an update of a conversation pinned to a cached version)
    makes no query and decodes no JSON.
    """
    with _spec_lock:
        digest = _content_by_version.get(version_id)
        spec = _spec_by_content.get(digest) if digest is not None else None
        if spec is not None:
            _content_by_version.move_to_end(version_id)
            _spec_by_content.move_to_end(digest)  # type: ignore[arg-type]
            CACHE_REQUESTS.labels(cache="spec", result="hit").inc()
            return spec

    CACHE_REQUESTS.labels(cache="spec", result="miss").inc()
    if source is None:
        raw = SpecVersion.objects.values_list("source", flat=True).get(pk=version_id)
    else:
        raw = source()
    digest = hashlib.sha256(
        json.dumps(raw, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    with _spec_lock:
        spec = _spec_by_content.get(digest)
    if spec is None:
        spec = spec_validate(raw)
    with _spec_lock:
        _spec_by_content[digest] = spec
        _spec_by_content.move_to_end(digest)
        _content_by_version[version_id] = digest
        _content_by_version.move_to_end(version_id)
        while len(_spec_by_content) > settings.SPEC_CACHE_SIZE:
            _spec_by_content.popitem(last=False)
        while len(_content_by_version) > _VERSIONS_CACHED:
            _content_by_version.popitem(last=False)

    return spec


def spec_cache_forget(*, version_id: int) -> None:
    """Drop one version from this process's cache (a version rolled back).

    Its parsed content stays while other versions share it; it ages out of
    the bounded cache otherwise.
    """
    with _spec_lock:
        _content_by_version.pop(version_id, None)


def spec_version_get_live(*, bot: Bot) -> SpecVersion | None:
    """Return the bot's live spec version, or None when nothing is published."""
    if bot.live_version_id is None:
        return None

    return SpecVersion.objects.filter(pk=bot.live_version_id).first()
