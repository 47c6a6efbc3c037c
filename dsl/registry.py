"""The component types a spec can use, by their ``type`` name.

Adding a type is adding one module to ``dsl.components`` that defines a
node model and decorates it with ``component_register``.
"""

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, Union, get_args

from pydantic import Field

from dsl.components.base import NodeBase

_N = TypeVar("_N", bound=type[NodeBase])

_COMPONENTS: dict[str, type[NodeBase]] = {}


def _type_name(model: type[NodeBase]) -> str:
    annotation = model.model_fields["type"].annotation
    names = get_args(annotation)
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{model.__name__}.type must be a Literal of one type name.")

    return names[0]


def component_register(model: _N) -> _N:
    """Register a node model under the type name of its ``type`` literal.

    Raises TypeError when ``type`` is not a one-value Literal and ValueError
    when another model already has the name.
    """
    name = _type_name(model)
    if name in _COMPONENTS and _COMPONENTS[name] is not model:
        raise ValueError(f"Component type {name!r} is already registered.")
    _COMPONENTS[name] = model

    return model


def component_types() -> Mapping[str, type[NodeBase]]:
    """Return the registered node models by type name, sorted by name.

    Never raises.
    """
    return {name: _COMPONENTS[name] for name in sorted(_COMPONENTS)}


def node_union() -> Any:
    """Return the discriminated union of every registered node model.

    Raises LookupError when no component type is registered.
    """
    models = tuple(component_types().values())
    if not models:
        raise LookupError("No component type is registered.")

    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
