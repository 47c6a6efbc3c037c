import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from botfactory import rows
from botfactory.metrics import CACHE_REQUESTS
from bots.models import Bot, SpecVersion
from dsl import Spec, spec_validate

# Parsed specs per version; versions are immutable, so entries never go
# stale and the cache only needs a bound.
_SPEC_CACHE_SIZE = 512
_spec_cache: "OrderedDict[int, Spec]" = OrderedDict()
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
        spec = _spec_cache.get(version_id)
        if spec is not None:
            _spec_cache.move_to_end(version_id)
            CACHE_REQUESTS.labels(cache="spec", result="hit").inc()
            return spec

    CACHE_REQUESTS.labels(cache="spec", result="miss").inc()
    if source is None:
        row = SpecVersion.objects.values_list("source", flat=True).get(pk=version_id)
        spec = spec_validate(row)
    else:
        spec = spec_validate(source())
    with _spec_lock:
        _spec_cache[version_id] = spec
        while len(_spec_cache) > _SPEC_CACHE_SIZE:
            _spec_cache.popitem(last=False)

    return spec


def spec_version_get_live(*, bot: Bot) -> SpecVersion | None:
    """Return the bot's live spec version, or None when nothing is published."""
    if bot.live_version_id is None:
        return None

    return SpecVersion.objects.filter(pk=bot.live_version_id).first()
