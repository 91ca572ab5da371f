"""Parameter schemas of registered policies, derived from each factory's signature.

A policy's parameters are the keyword arguments of its factory (a class or a function), with
their type hints and defaults. :func:`params_model` turns them into a pydantic model, so the
schema a scenario is checked against is the code itself and cannot drift from it. Arguments
the runtime supplies (:data:`CONTEXT_ARGS`: the seed, the scenario's SLO classes, tenant
weights and quality table) are not parameters.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from fleetsched.core.config import Problem
from fleetsched.errors import InputError

#: Factory arguments filled in by the runtime, never read from a scenario's ``params``.
CONTEXT_ARGS = frozenset({"seed", "slo_classes", "tenant_weights", "quality"})


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a policy: name, type hint as written, default (``REQUIRED`` if none)."""

    name: str
    type: str
    default: Any


REQUIRED: Any = inspect.Parameter.empty


def _signature(factory: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    return inspect.signature(factory), typing.get_type_hints(target)


def _type_name(hint: Any) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("typing.", "").replace("collections.abc.", "")


@cache
def policy_params(factory: Callable[..., Any]) -> tuple[Param, ...]:
    """The parameters of ``factory`` in signature order (context arguments left out).

    Raises ``TypeError`` if a parameter has no type hint: every policy must declare them.
    """
    sig, hints = _signature(factory)
    out = []
    for name, p in sig.parameters.items():
        if name in CONTEXT_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in hints:
            raise TypeError(f"{factory.__qualname__}: parameter {name!r} has no type hint")
        out.append(Param(name, _type_name(hints[name]), p.default))
    return tuple(out)


@cache
def params_model(factory: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of ``factory``'s parameters (unknown keys are errors)."""
    hints = _signature(factory)[1]
    fields: dict[str, Any] = {}
    for p in policy_params(factory):
        default = ... if p.default is REQUIRED else p.default
        fields[p.name] = (hints[p.name], default)
    return create_model(
        f"{factory.__name__}Params",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )


def _unknown(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown parameter; {hint}(valid: {', '.join(valid) or 'none'})"


def check_params(
    factory: Callable[..., Any], params: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate ``params`` against ``factory``'s schema.

    Returns the given parameters converted to their declared types (e.g. ``1`` -> ``1.0``)
    and the problems, each located under ``params`` (``("params", "cache_threshold")``).
    """
    model = params_model(factory)
    valid = list(model.model_fields)
    if not isinstance(params, Mapping):
        return {}, [(("params",), "must be a mapping of parameter names to values")]
    try:
        m = model.model_validate(dict(params))
    except ValidationError as e:
        problems: list[Problem] = []
        for err in e.errors():
            loc = ("params", *err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append((loc, _unknown(str(err["loc"][0]), valid)))
            else:
                problems.append((loc, err["msg"]))
        return {}, problems
    return {k: getattr(m, k) for k in m.model_fields_set}, []


def build_policy(
    factory: Callable[..., Any],
    kind: str,
    name: str,
    params: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> Any:
    """``factory(**params, **context)`` after checking ``params`` against its schema.

    Only the context arguments the factory accepts are passed. Bad parameters raise
    :class:`InputError` naming the parameter (``bad parameters for router 'x': params.y: ...``).
    """
    values, problems = check_params(factory, params)
    if problems:
        loc, msg = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        path = ".".join(map(str, loc))
        raise InputError(f"bad parameters for {kind} {name!r}: {path}: {msg}{more}")
    accepted = inspect.signature(factory).parameters
    extra = {k: v for k, v in (context or {}).items() if k in accepted and k not in values}
    return factory(**values, **extra)


__all__ = [
    "CONTEXT_ARGS",
    "REQUIRED",
    "Param",
    "Problem",
    "build_policy",
    "check_params",
    "params_model",
    "policy_params",
]
