"""Strict structuring of config values, shared by the experiment config and plugin options.

Values are checked, never coerced: ``denoising_steps = "10"`` is an error, not 10. Errors name the key path.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs

from ddrl_framework.errors import UserError


def _strict(kind: type, accepted: tuple[type, ...]) -> Callable[[Any, type], Any]:
    def structure(value: Any, _: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return kind(value)

    return structure


def make_converter() -> cattrs.Converter:
    """A cattrs converter that rejects unknown keys and wrong types."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict(int, (int,)))
    converter.register_structure_hook(float, _strict(float, (int, float)))
    converter.register_structure_hook(str, _strict(str, (str,)))
    converter.register_structure_hook(bool, _strict(bool, (bool,)))
    return converter


CONVERTER = make_converter()


def describe_error(error: Exception, where: str) -> str:
    """One line per problem, each naming the key path (cattrs' ``$`` replaced by ``where``)."""
    if isinstance(error, cattrs.BaseValidationError):
        lines = cattrs.transform_error(error, path=where)
    else:
        lines = [f"{error} @ {where}"]
    return "\n".join(f"  {line}" for line in lines)


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    """A suggestion: the closest known name, or one that ends with ``_<name>`` (a renamed option)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k.endswith(f"_{name}")][:1]
    return f" Did you mean '{close[0]}'?" if close else ""


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory if (attrs.has(factory) or not inspect.isclass(factory)) else factory.__init__
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable annotations: check names only
        return {}


def _parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters ``factory`` accepts as options (None: it takes ``**kwargs``, anything)."""
    params = dict(inspect.signature(factory).parameters)
    option_class = getattr(factory, "option_class", None)
    if option_class is None and any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    if option_class is not None:
        params.update(inspect.signature(option_class).parameters)
    return {n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def accepts_option(factory: Callable[..., Any], key: str) -> bool:
    """Whether ``factory`` takes the option ``key`` (a factory taking ``**kwargs`` takes any)."""
    params = _parameters(factory)
    return params is None or key in params


def structure_options(
    factory: Callable[..., Any], options: Mapping[str, Any], where: str, component: str
) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s keyword parameters and their type hints.

    A factory taking ``**kwargs`` accepts anything, unless it names an attrs class as its
    ``option_class``: then that class's fields are accepted (and checked) as well.
    """
    params = _parameters(factory)
    if params is None:
        return dict(options)
    hints = _type_hints(factory)
    option_class = getattr(factory, "option_class", None)
    if option_class is not None:
        hints.update(_type_hints(option_class))
    accepted = set(params)
    for key in options:
        if key not in accepted:
            raise UserError(
                f"{where}: unknown option '{key}' for {component}.{did_you_mean(key, accepted)}"
                f" Known options: {', '.join(sorted(accepted)) or '(none)'}."
            )
    missing = [n for n in accepted if params[n].default is params[n].empty and n not in options]
    if missing:
        raise UserError(f"{where}: {component} needs option(s): {', '.join(sorted(missing))}.")
    structured = {}
    for key, value in options.items():
        try:
            structured[key] = CONVERTER.structure(value, hints[key]) if key in hints else value
        except Exception as error:
            raise UserError(f"{where}: wrong value for {component}:\n"
                            f"{describe_error(error, f'{where}.{key}')}") from None
    return structured
