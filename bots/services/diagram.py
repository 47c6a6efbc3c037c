"""The flow diagram of a bot's spec: a version or the draft, drawn as SVG."""

from dataclasses import dataclass

from bots.models import Bot
from bots.selectors import spec_get
from bots.services.local_specs import DRAFT_NUMBER
from dsl import SpecErrorItem, SpecInvalidError, spec_validate
from dsl.graph import SpecGraph, spec_graph
from dsl.graph_svg import graph_svg
from i18n.selectors import translator_get


@dataclass(frozen=True)
class Diagram:
    """The drawing, or the errors that keep an invalid draft from one."""

    graph: SpecGraph | None = None
    svg: str = ""
    errors: tuple[SpecErrorItem, ...] = ()


def diagram_build(*, bot: Bot, number: int) -> Diagram:
    """Draw version ``number`` of the bot's spec, or its draft for 0.

    A draft is only validated, not linted: what the linter would refuse
    (a missing target, an unreachable node) is what the diagram shows.
    Labels are the texts of the spec's default locale. Raises
    SpecVersion.DoesNotExist for an unknown number.
    """
    if number == DRAFT_NUMBER:
        try:
            spec = spec_validate(bot.draft_spec)
        except SpecInvalidError as exc:
            return Diagram(errors=tuple(exc.errors))
    else:
        spec = spec_get(version=bot.versions.get(number=number))

    translator = translator_get(
        bot_id=bot.pk,
        revision=bot.cache_revision,
        locale=spec.default_locale,
        default_locale=spec.default_locale,
    )
    graph = spec_graph(spec, translator=translator)
    version = "draft" if number == DRAFT_NUMBER else f"version {number}"

    return Diagram(graph=graph, svg=graph_svg(graph, title=f"{bot.name}, {version}"))
