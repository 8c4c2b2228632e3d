"""Strict structuring of config values, shared by the experiment config and plugin options.

Values are checked, never coerced: ``denoising_steps = "10"`` is an error, not 10. Errors name the
key path. Ranges are declared where a value is defined, with :func:`bounded` (or any attrs
validator) on an attrs field; :func:`structure_options` runs them on a plugin's options without
building the plugin.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

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


class OutOfRange(ValueError):
    """A value outside its field's range (raised by :func:`bounded`); ``field`` names the field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def bounded(*, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator: a finite number within the bounds (``None`` passes, for optional
    fields). ``learning_rate: float = attrs.field(default=1e-4, validator=bounded(above=0))``."""
    def check(_: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        wrong = (not math.isfinite(value) or (at_least is not None and value < at_least)
                 or (above is not None and value <= above) or (at_most is not None and value > at_most))
        if wrong:
            limits = [f"{word} {bound:g}" for word, bound in ((">=", at_least), (">", above), ("<=", at_most))
                      if bound is not None]
            raise OutOfRange(attribute.name, " ".join(["must be a finite number", " and ".join(limits)]).strip()
                             + f", got {value!r}")

    return check


def _message(error: BaseException, type_: Any) -> str:
    if type(error) in (TypeError, ValueError, OutOfRange) and str(error):
        return str(error)  # our own hooks' and validators' messages say what would be right
    return format_exception(error, type_)


def error_paths(error: BaseException, path: str = "", type_: Any = None) -> list[tuple[str, str]]:
    """Each problem in ``error`` (a cattrs validation error, or one exception) as ``(message, key
    path)``: ``.field`` per class field, ``[i]`` per list item, and the field an :class:`OutOfRange`
    names (a validator's error comes from the class, without its field)."""
    if isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        with_notes, without = error.group_exceptions()
        out = []
        for sub, note in with_notes:
            if isinstance(error, cattrs.IterableValidationError):
                out += error_paths(sub, f"{path}[{note.index!r}]", note.type)
            else:
                out += error_paths(sub, f"{path}.{note.name}" if path else note.name, note.type)
        for sub in without:
            out += error_paths(sub, path)
        return out
    if isinstance(error, OutOfRange):
        return [(str(error), f"{path}.{error.field}" if path else error.field)]
    return [(_message(error, type_), path)]


def key_error(where: str, message: str) -> str:
    """The one format of an error at a config key: where (the file and the key path), then what
    is wrong: ``configs/x.toml: train.groups: must be a finite number >= 1, got 0``."""
    return f"{where}: {message}"


def describe_error(error: Exception, where: str, about: str = "") -> str:
    """One :func:`key_error` line per problem in ``error``, each at its key path below ``where``
    (``x.toml: [data].classes[1]``), its message after ``about`` (the component, when given)."""
    return "\n".join(key_error(path, f"{about}: {message}" if about else message)
                     for message, path in error_paths(error, where))


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    """A suggestion: the closest known name, or one that ends with ``_<name>`` (a renamed option)."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k.endswith(f"_{name}")][:1]
    return f" Did you mean '{close[0]}'?" if close else ""


def _option_class(factory: Callable[..., Any]) -> type | None:
    """The attrs class whose fields are the factory's options: the factory itself, or its
    ``option_class`` (a factory taking ``**kwargs`` for them)."""
    declared = getattr(factory, "option_class", None)
    return declared if declared is not None else (factory if attrs.has(factory) else None)


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


def _run_validators(factory: Callable[..., Any], values: Mapping[str, Any], where: str, component: str) -> None:
    """The attrs validators of the option fields given, run on their values without building
    anything (a validator reading other fields sees their values or defaults)."""
    option_class = _option_class(factory)
    if option_class is None:
        return
    fields = {f.name: f for f in attrs.fields(option_class)}
    defaults = {n: f.default for n, f in fields.items()
                if f.default is not attrs.NOTHING and not isinstance(f.default, attrs.Factory)}
    instance = types.SimpleNamespace(**{**defaults, **values})
    for key, value in values.items():
        field = fields.get(key)
        if field is None or field.validator is None:
            continue
        try:
            field.validator(instance, field, value)
        except (TypeError, ValueError) as error:
            raise UserError(key_error(f"{where}.{key}", f"{component} rejects {value!r}: {error}")) from None


def structure_options(
    factory: Callable[..., Any], options: Mapping[str, Any], where: str, component: str
) -> dict[str, Any]:
    """Check ``options`` against ``factory``'s keyword parameters, their type hints and (for an
    attrs class, or a factory naming one as its ``option_class``) their fields' validators.

    A factory taking ``**kwargs`` accepts anything, unless it names an ``option_class``: then
    that class's fields are accepted (and checked) as well.
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
            raise UserError(key_error(
                where, f"unknown option '{key}' for {component}.{did_you_mean(key, accepted)}"
                f" Known options: {', '.join(sorted(accepted)) or '(none)'}."))
    missing = [n for n in accepted if params[n].default is params[n].empty and n not in options]
    if missing:
        raise UserError(key_error(where, f"{component} needs option(s): {', '.join(sorted(missing))}."))
    structured = {}
    for key, value in options.items():
        try:
            structured[key] = CONVERTER.structure(value, hints[key]) if key in hints else value
        except Exception as error:
            raise UserError(describe_error(error, f"{where}.{key}", f"wrong value for {component}")) from None
    _run_validators(factory, structured, where, component)
    return structured


def with_defaults(factory: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    """``factory`` with other defaults for some of its options, checked as ``factory``'s are: one
    builder registered under two names (``wan`` and ``wan2.2``, whose tiny configuration differs)."""
    signature = inspect.signature(factory)
    unknown = set(defaults) - set(signature.parameters)
    if unknown:
        raise TypeError(f"with_defaults: {factory.__name__} has no option(s) {sorted(unknown)}")

    @functools.wraps(factory)
    def build(**options: Any) -> Any:
        return factory(**{**defaults, **options})

    build.__signature__ = signature.replace(parameters=[
        p.replace(default=defaults.get(p.name, p.default)) for p in signature.parameters.values()])
    return build
