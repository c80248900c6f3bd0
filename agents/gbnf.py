"""JSON schema to GBNF (llama.cpp's grammar format), keeping the bounds the local grammar keeps.

llama.cpp's own schema converter drops ``minimum`` and ``maximum``, so a server that takes the
schema still lets a model write ``"k": 5000`` for a tool that allows 1 to 50. This writer keeps
them: an integer range becomes a digit pattern, a number range a digit pattern with at most
:data:`NUMBER_DECIMALS` decimals and no exponent. Strings keep ``minLength``/``maxLength`` (free
text without one gets :data:`DEFAULT_STRING_MAX_CHARS`), arrays ``minItems``/``maxItems``;
objects are closed to undeclared keys and keep their declared property order; ``$ref`` targets
under ``$defs`` become rules. The JSON is compact (no free whitespace), as locally.

The grammar is built as a small expression tree that renders to GBNF for servers and to a Python
regular expression for checking (:func:`schema_regex`; not for recursive schemas).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from medgraph.agents.protocol import DEFAULT_STRING_MAX_CHARS, MAX_NUMBER_DIGITS

NUMBER_DECIMALS = 6
"""Decimals a number may have (the local grammar's ``multipleOf`` 1e-6)."""

_SCALE = 10**NUMBER_DECIMALS
_INTEGER_LIMIT = 10**MAX_NUMBER_DIGITS - 1
_NUMBER_LIMIT = 10**9 - 1
_CHAR_CLASS = r'[^"\\\x7F\x00-\x1F]'
_ESCAPES = r'["\\/bfnrt]'


class GBNFError(ValueError):
    """A JSON schema that the GBNF writer cannot express."""


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Class:
    body: str  # a character class with its brackets, e.g. "[0-9]"


@dataclass(frozen=True)
class _Seq:
    parts: tuple[_Expr, ...]


@dataclass(frozen=True)
class _Alt:
    options: tuple[_Expr, ...]


@dataclass(frozen=True)
class _Rep:
    item: _Expr
    low: int
    high: int | None


@dataclass(frozen=True)
class _Ref:
    name: str


_Expr = _Lit | _Class | _Seq | _Alt | _Rep | _Ref
_DIGIT = _Class("[0-9]")
_EMPTY = _Lit("")


def _seq(*parts: _Expr) -> _Expr:
    kept = tuple(p for p in parts if p != _EMPTY)
    return kept[0] if len(kept) == 1 else _Seq(kept) if kept else _EMPTY


def _alt(*options: _Expr) -> _Expr:
    unique = tuple(dict.fromkeys(options))
    if not unique:
        raise GBNFError("an empty choice (a range or enum that allows no value)")
    return unique[0] if len(unique) == 1 else _Alt(unique)


def _digits(low: int, high: int | None) -> _Expr:
    return _EMPTY if high == 0 else _Rep(_DIGIT, low, high)


def _digit_span(first: int, last: int) -> _Expr:
    """One digit from ``first`` to ``last``."""
    return _Lit(str(first)) if first == last else _Class(f"[{first}-{last}]")


def _signed(low: int, high: int, magnitudes: Callable[[int, int], _Expr]) -> _Expr:
    """Values from ``low`` to ``high`` (``low <= high``, in the units ``magnitudes`` takes): a
    minus sign before the negative ones' magnitudes (never ``-0``), then the non-negative ones."""
    options = []
    if low < 0:
        options.append(_seq(_Lit("-"), magnitudes(max(1, -high), -low)))
    if high >= 0:
        options.append(magnitudes(max(0, low), high))
    return _alt(*options)


# Integers -----------------------------------------------------------------------------------


def _same_length(low: str, high: str) -> _Expr:
    """Digit strings of ``len(low)`` characters from ``low`` to ``high`` (``low <= high``)."""
    if not low:
        return _EMPTY
    rest = len(low) - 1
    if low[0] == high[0]:
        return _seq(_Lit(low[0]), _same_length(low[1:], high[1:]))
    options: list[_Expr] = []
    first, last = int(low[0]), int(high[0])
    if low[1:].strip("0"):  # the low branch needs its own tail
        options.append(_seq(_Lit(low[0]), _same_length(low[1:], "9" * rest)))
        first += 1
    if high[1:].strip("9"):
        last -= 1
    if first <= last:
        options.append(_seq(_digit_span(first, last), _digits(rest, rest)))
    if high[1:].strip("9"):
        options.append(_seq(_Lit(high[0]), _same_length("0" * rest, high[1:])))
    return _alt(*options)


def _natural_range(low: int, high: int) -> _Expr:
    """Non-negative integers from ``low`` to ``high`` written without leading zeros."""
    options = []
    for length in range(len(str(low)), len(str(high)) + 1):
        start = max(low, 10 ** (length - 1) if length > 1 else 0)
        end = min(high, 10**length - 1)
        if start <= end:
            options.append(_same_length(str(start), str(end)))
    return _alt(*options)


def integer_range(low: int, high: int) -> _Expr:
    """JSON integers from ``low`` to ``high`` inclusive."""
    if low > high:
        raise GBNFError(f"an integer range with minimum {low} above maximum {high}")
    return _signed(low, high, _natural_range)


# Numbers ------------------------------------------------------------------------------------


def _fraction(low: str, high: str, *, need_digit: bool) -> _Expr:
    """Decimal digits ``f`` (as many as ``low`` has, or fewer) whose zero-padding lies between
    the equally long ``low`` and ``high``."""
    may_stop = not need_digit and not low.strip("0")
    if not low:
        return _EMPTY
    rest = len(low) - 1
    if not low.strip("0") and not high.strip("9"):
        return _digits(1 if need_digit else 0, len(low))
    options: list[_Expr] = [_EMPTY] if may_stop else []
    if low[0] == high[0]:
        options.append(_seq(_Lit(low[0]), _fraction(low[1:], high[1:], need_digit=False)))
    else:
        options.append(_seq(_Lit(low[0]), _fraction(low[1:], "9" * rest, need_digit=False)))
        first, last = int(low[0]) + 1, int(high[0]) - 1
        if first <= last:
            options.append(_seq(_digit_span(first, last), _digits(0, rest)))
        options.append(_seq(_Lit(high[0]), _fraction("0" * rest, high[1:], need_digit=False)))
    return _alt(*options)


def _decimal_part(low: int, high: int) -> _Expr:
    """``.digits`` worth ``low`` to ``high`` millionths (0 to 999,999); left out only when
    ``low`` is 0."""
    digits = _fraction(f"{low:0{NUMBER_DECIMALS}d}", f"{high:0{NUMBER_DECIMALS}d}", need_digit=True)
    point = _seq(_Lit("."), digits)
    return _alt(_EMPTY, point) if low == 0 else point


def _magnitude_range(low: int, high: int) -> _Expr:
    """Non-negative decimals whose value in millionths lies in ``[low, high]``."""
    low_units, low_fraction = divmod(low, _SCALE)
    high_units, high_fraction = divmod(high, _SCALE)
    if low_units == high_units:
        return _seq(
            _natural_range(low_units, low_units), _decimal_part(low_fraction, high_fraction)
        )
    options = []
    if low_fraction:  # the first unit only from its fraction on
        options.append(
            _seq(_natural_range(low_units, low_units), _decimal_part(low_fraction, _SCALE - 1))
        )
        low_units += 1
    if low_units <= high_units - 1:
        options.append(
            _seq(_natural_range(low_units, high_units - 1), _decimal_part(0, _SCALE - 1))
        )
    options.append(_seq(_natural_range(high_units, high_units), _decimal_part(0, high_fraction)))
    return _alt(*options)


def number_range(low: Decimal, high: Decimal) -> _Expr:
    """JSON numbers from ``low`` to ``high`` with at most :data:`NUMBER_DECIMALS` decimals."""
    low_units = int((low * _SCALE).to_integral_value(ROUND_CEILING))
    high_units = int((high * _SCALE).to_integral_value(ROUND_FLOOR))
    if low_units > high_units:
        raise GBNFError(f"a number range with minimum {low} above maximum {high}")
    return _signed(low_units, high_units, _magnitude_range)


def _bound(schema: Mapping[str, Any], key: str) -> Decimal | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(str(value))


def _numeric(schema: Mapping[str, Any], integer: bool) -> _Expr:
    limit = Decimal(_INTEGER_LIMIT if integer else _NUMBER_LIMIT)
    step = Decimal(1) if integer else Decimal(1) / _SCALE
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    above, below = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if above is not None:
        low = max(low, above + step) if low is not None else above + step
    if below is not None:
        high = min(high, below - step) if high is not None else below - step
    low = max(low, -limit) if low is not None else -limit
    high = min(high, limit) if high is not None else limit
    if integer:
        return integer_range(
            int(low.to_integral_value(ROUND_CEILING)), int(high.to_integral_value(ROUND_FLOOR))
        )
    return number_range(low, high)


# Schemas ------------------------------------------------------------------------------------


def _literal(value: Any) -> _Lit:
    return _Lit(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [str(t) for t in declared]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


class _Writer:
    """Turns one schema into rules; ``$ref`` targets become rules of their own."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.definitions: Mapping[str, Any] = root.get("$defs") or root.get("definitions") or {}
        self.rules: dict[str, _Expr] = {}
        self.objects = 0

    def value(self, schema: Any, where: str) -> _Expr:
        if schema is True or schema == {}:
            raise GBNFError(f"{where} allows any JSON value; give it a type")
        if not isinstance(schema, Mapping):
            raise GBNFError(f"{where} is not a schema object: {schema!r}")
        if "$ref" in schema:
            return self._reference(str(schema["$ref"]), where)
        if "const" in schema:
            return _literal(schema["const"])
        if isinstance(schema.get("enum"), list):
            return _alt(*(_literal(option) for option in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                return _alt(
                    *(self.value(s, f"{where}.{key}[{i}]") for i, s in enumerate(schema[key]))
                )
        if "allOf" in schema:
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise GBNFError(f"{where} uses allOf with several schemas; merge them into one")
            return self.value(parts[0], f"{where}.allOf[0]")
        types = _types(schema)
        if not types:
            raise GBNFError(f"{where} has no type; give it one (or an enum)")
        return _alt(*(self._typed(schema, kind, where) for kind in types))

    def _reference(self, reference: str, where: str) -> _Ref:
        name = reference.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
        if not reference.startswith(("#/$defs/", "#/definitions/")) or name not in self.definitions:
            raise GBNFError(f"{where} refers to {reference!r}, which is not under $defs")
        rule = "def-" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
        if rule not in self.rules:
            self.rules[rule] = _EMPTY  # placeholder: a recursive schema refers back to it
            self.rules[rule] = self.value(self.definitions[name], reference)
        return _Ref(rule)

    def _typed(self, schema: Mapping[str, Any], kind: str, where: str) -> _Expr:
        if kind in ("integer", "number"):
            return _numeric(schema, kind == "integer")
        if kind == "string":
            if "pattern" in schema or "format" in schema:
                raise GBNFError(f"{where} has a pattern or format, which GBNF here does not check")
            low = int(schema.get("minLength", 0))
            high = int(schema.get("maxLength", DEFAULT_STRING_MAX_CHARS))
            return _seq(_Lit('"'), _Rep(_Ref("char"), low, high), _Lit('"'))
        if kind == "boolean":
            return _alt(_Lit("true"), _Lit("false"))
        if kind == "null":
            return _Lit("null")
        if kind == "array":
            return self._array(schema, where)
        if kind == "object":
            return self._object(schema, where)
        raise GBNFError(f"{where} has the unknown type {kind!r}")

    def _array(self, schema: Mapping[str, Any], where: str) -> _Expr:
        if "prefixItems" in schema or "items" not in schema:
            raise GBNFError(f"{where} is an array without one 'items' schema")
        item = self.value(schema["items"], f"{where}.items")
        low = int(schema.get("minItems", 0))
        maximum = schema.get("maxItems")
        high = int(maximum) if isinstance(maximum, int) else None
        if high == 0:
            return _Lit("[]")
        more = (
            _EMPTY
            if high == 1
            else _Rep(_seq(_Lit(","), item), max(0, low - 1), None if high is None else high - 1)
        )
        items = _seq(item, more)
        return _seq(_Lit("["), items if low > 0 else _alt(_EMPTY, items), _Lit("]"))

    def _object(self, schema: Mapping[str, Any], where: str) -> _Expr:
        extra = schema.get("additionalProperties")
        if extra not in (None, False) or "patternProperties" in schema:
            raise GBNFError(f"{where} allows keys beyond its properties; close it")
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        members = [
            (
                _seq(_literal(name), _Lit(":"), self.value(sub, f"{where}.{name}")),
                name in required,
            )
            for name, sub in properties.items()
        ]
        # Declared order; each optional member may be left out, and a comma goes before every
        # member but the first one written. Members and tails are rules, so the grammar grows
        # linearly with the number of optional members.
        self.objects += 1
        prefix = f"object{self.objects}"
        tails: dict[tuple[int, bool], _Expr] = {
            (len(members), True): _EMPTY,
            (len(members), False): _EMPTY,
        }
        for index in range(len(members) - 1, -1, -1):
            member, needed = members[index]
            self.rules[f"{prefix}-member{index}"] = member
            for first in (True, False):
                written = _seq(
                    _EMPTY if first else _Lit(","),
                    _Ref(f"{prefix}-member{index}"),
                    tails[(index + 1, False)],
                )
                rule = f"{prefix}-{'first' if first else 'next'}{index}"
                self.rules[rule] = written if needed else _alt(written, tails[(index + 1, first)])
                tails[(index, first)] = _Ref(rule)
        return _seq(_Lit("{"), tails[(0, True)], _Lit("}"))


def _character() -> _Expr:
    escape = _seq(
        _Lit("\\"), _alt(_Class(_ESCAPES), _seq(_Lit("u"), _Rep(_Class("[0-9a-fA-F]"), 4, 4)))
    )
    return _alt(_Class(_CHAR_CLASS), escape)


def _references(expr: _Expr) -> list[str]:
    if isinstance(expr, _Ref):
        return [expr.name]
    if isinstance(expr, _Seq | _Alt):
        children = expr.parts if isinstance(expr, _Seq) else expr.options
        return [name for child in children for name in _references(child)]
    return _references(expr.item) if isinstance(expr, _Rep) else []


def _rules(schema: Mapping[str, Any]) -> dict[str, _Expr]:
    """The grammar's rules, ``root`` first, keeping only those ``root`` reaches."""
    writer = _Writer(schema)
    defined = {"root": writer.value(schema, "the schema"), **writer.rules, "char": _character()}
    reached = ["root"]
    for name in reached:
        reached.extend(r for r in _references(defined[name]) if r not in reached)
    return {name: defined[name] for name in defined if name in reached}


def _gbnf(expr: _Expr) -> str:
    if isinstance(expr, _Lit):
        return json.dumps(expr.text, ensure_ascii=False)
    if isinstance(expr, _Class):
        return expr.body
    if isinstance(expr, _Ref):
        return expr.name
    if isinstance(expr, _Seq):
        return " ".join(_wrapped(p, _gbnf) for p in expr.parts)
    if isinstance(expr, _Alt):
        options = [o for o in expr.options if o != _EMPTY]
        text = "(" + " | ".join(_gbnf(o) for o in options) + ")"
        return text + "?" if len(options) < len(expr.options) else text
    high = "" if expr.high is None else str(expr.high)
    count = f"{{{expr.low}}}" if expr.low == expr.high else f"{{{expr.low},{high}}}"
    return _wrapped(expr.item, _gbnf) + count


def _wrapped(expr: _Expr, render: Callable[[_Expr], str]) -> str:
    text = render(expr)
    return f"({text})" if isinstance(expr, _Seq) else text


def schema_gbnf(schema: Mapping[str, Any]) -> str:
    """The GBNF grammar (rule ``root``) of compact JSON that follows ``schema`` within its bounds.

    Raises :class:`GBNFError` for what it cannot express: ``allOf`` of several schemas, open
    objects, string patterns, ``prefixItems``, schemas without a type.
    """
    return "\n".join(f"{name} ::= {_gbnf(expr)}" for name, expr in _rules(schema).items()) + "\n"


def schema_regex(schema: Mapping[str, Any]) -> re.Pattern[str]:
    """The same language as :func:`schema_gbnf` as a Python regular expression (for checks);
    raises :class:`GBNFError` for a recursive schema."""
    rules = _rules(schema)

    def render(expr: _Expr, depth: int) -> str:
        if depth > 64:
            raise GBNFError("a recursive schema has no regular expression")
        if isinstance(expr, _Lit):
            return re.escape(expr.text)
        if isinstance(expr, _Class):
            return expr.body
        if isinstance(expr, _Ref):
            return f"(?:{render(rules[expr.name], depth + 1)})"
        if isinstance(expr, _Seq):
            return "".join(f"(?:{render(p, depth)})" for p in expr.parts)
        if isinstance(expr, _Alt):
            return "(?:" + "|".join(render(o, depth) for o in expr.options) + ")"
        high = "" if expr.high is None else str(expr.high)
        return f"(?:{render(expr.item, depth)}){{{expr.low},{high}}}"

    return re.compile(render(rules["root"], 0))
