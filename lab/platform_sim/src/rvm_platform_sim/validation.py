"""Laravel-style request validation, reduced to the rules the MyRVM edge API uses.

The device client must cope with the platform's real 422 replies, so the simulator reproduces
Laravel's behaviour rather than inventing its own: the same rule semantics (absent fields skip
every rule but ``required``; ``nullable`` lets ``null`` through; a failed ``required`` stops the
other rules of that field; wildcards expand over what was sent), the same English messages
(``lang/en/validation.php`` of Laravel 10+), the same attribute names in messages (``_`` shown
as a space) and the same summary line ("… (and 2 more errors)").

Pure functions over plain data: nothing here touches HTTP or SQLite.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rvm_platform_sim.imagetype import sniff_image_type

Errors = dict[str, list[str]]

_MISSING = object()
# PHP 8's is_numeric: optional surrounding whitespace, sign, decimals, exponent; no hex, no "inf".
_PHP_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
_IMPLICIT_RULES = frozenset({"required"})
# Laravel's `image` rule is `mimes` with this list.
_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif", "bmp", "svg", "webp")

_MESSAGES = {
    "required": "The {attribute} field is required.",
    "string": "The {attribute} field must be a string.",
    "numeric": "The {attribute} field must be a number.",
    "integer": "The {attribute} field must be an integer.",
    "boolean": "The {attribute} field must be true or false.",
    "array": "The {attribute} field must be an array.",
    "ip": "The {attribute} field must be a valid IP address.",
    "json": "The {attribute} field must be a valid JSON string.",
    "file": "The {attribute} field must be a file.",
    "image": "The {attribute} field must be an image.",
    "mimes": "The {attribute} field must be a file of type: {values}.",
    "in": "The selected {attribute} is invalid.",
    "regex": "The {attribute} field format is invalid.",
}
_SIZE_MESSAGES = {
    "max": {
        "numeric": "The {attribute} field must not be greater than {value}.",
        "file": "The {attribute} field must not be greater than {value} kilobytes.",
        "string": "The {attribute} field must not be greater than {value} characters.",
        "array": "The {attribute} field must not have more than {value} items.",
    },
    "min": {
        "numeric": "The {attribute} field must be at least {value}.",
        "file": "The {attribute} field must be at least {value} kilobytes.",
        "string": "The {attribute} field must be at least {value} characters.",
        "array": "The {attribute} field must have at least {value} items.",
    },
}


@dataclass(frozen=True)
class UploadedFile:
    """A multipart file part: what Laravel's ``UploadedFile`` exposes to the rules."""

    filename: str
    content_type: str
    data: bytes


class ValidationFailed(Exception):
    """Raised with the Laravel ``errors`` bag; the HTTP layer turns it into a 422."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(summary_message(errors))
        self.errors = errors


def summary_message(errors: Errors) -> str:
    """The top-level ``message`` Laravel puts beside ``errors``: the first message plus a count."""
    messages = [m for ms in errors.values() for m in ms]
    if not messages:
        return ""
    rest = len(messages) - 1
    if rest == 0:
        return messages[0]
    return f"{messages[0]} (and {rest} more error{'s' if rest > 1 else ''})"


def display_name(attribute: str) -> str:
    """Laravel shows ``system.ai_models.model_name`` as ``system.ai models.model name``."""
    return attribute.replace("_", " ")


def is_numeric(value: Any) -> bool:
    """PHP's ``is_numeric``: numbers and numeric strings, never booleans, NaN or infinities."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and _PHP_NUMERIC.match(value) is not None


def _get(data: Any, path: list[str]) -> Any:
    current = data
    for key in path:
        if isinstance(current, Mapping) and key in current:
            current = current[key]
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return _MISSING
    return current


def _expand(data: Any, pattern: str) -> Iterator[str]:
    """Expand ``a.*.b`` into the concrete paths present in ``data`` (none when ``a`` is absent)."""
    parts = pattern.split(".")
    if "*" not in parts:
        yield pattern
        return
    star = parts.index("*")
    parent = _get(data, parts[:star])
    if isinstance(parent, Mapping):
        keys = [str(k) for k in parent]
    elif isinstance(parent, list):
        keys = [str(i) for i in range(len(parent))]
    else:
        return
    for key in keys:
        yield from _expand(data, ".".join([*parts[:star], key, *parts[star + 1 :]]))


def _size(value: Any, numeric_rule: bool) -> tuple[float, str]:
    """Laravel's ``getSize``: what ``min``/``max`` compare, and which message variant applies."""
    if numeric_rule and is_numeric(value):
        return float(value), "numeric"
    if isinstance(value, UploadedFile):
        return len(value.data) / 1024, "file"
    if isinstance(value, (list, Mapping)):
        return float(len(value)), "array"
    if isinstance(value, str):
        return float(len(value)), "string"
    if isinstance(value, bool):  # PHP casts true to "1" and false to "" for mb_strlen
        return float(1 if value else 0), "string"
    if value is None:
        return 0.0, "string"
    return float(len(str(value))), "string"


def _is_json(value: Any) -> bool:
    if not isinstance(value, str):
        return False

    def _reject(_: str) -> None:
        raise ValueError("NaN and Infinity are not JSON")

    try:
        json.loads(value, parse_constant=_reject)
    except ValueError:
        return False
    return True


def _is_ip(value: Any) -> bool:
    # PHP's FILTER_VALIDATE_IP has no IPv6 zone ids ("fe80::1%eth0"); Python's parser accepts them.
    if not isinstance(value, str) or "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _mimes_ok(value: Any, allowed: list[str]) -> bool:
    """By content, as Laravel's ``guessExtension`` does; ``jpg`` and ``jpeg`` are one type."""
    if not isinstance(value, UploadedFile):
        return False
    kind = sniff_image_type(value.data)
    if kind is None:
        return False
    names = {kind, "jpg"} if kind == "jpeg" else {kind}
    return bool(names & set(allowed))


def _passes(rule: str, params: list[str], value: Any, rules: list[str]) -> bool:
    if rule == "required":
        if value is _MISSING or value is None:
            return False
        if isinstance(value, str):
            return value.strip() != ""
        if isinstance(value, (list, Mapping)):
            return len(value) > 0
        if isinstance(value, UploadedFile):
            return value.filename != "" or len(value.data) > 0
        return True
    if rule == "string":
        return isinstance(value, str)
    if rule == "numeric":
        return is_numeric(value)
    if rule == "integer":
        return not isinstance(value, bool) and (
            isinstance(value, int)
            or (isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value) is not None)
        )
    if rule == "boolean":
        return value in (True, False, 0, 1, "0", "1")
    if rule == "array":
        return isinstance(value, (list, Mapping))
    if rule == "ip":
        return _is_ip(value)
    if rule == "json":
        return _is_json(value)
    if rule == "file":
        return isinstance(value, UploadedFile)
    if rule == "image":
        return _mimes_ok(value, list(_IMAGE_EXTENSIONS))
    if rule == "mimes":
        return _mimes_ok(value, params)
    if rule == "in":
        return isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) in params
    if rule == "regex":
        return isinstance(value, str) and re.fullmatch(params[0], value) is not None
    if rule in ("max", "min"):
        size = _size(value, "numeric" in rules or "integer" in rules)
        limit = float(params[0])
        return size[0] <= limit if rule == "max" else size[0] >= limit
    raise ValueError(f"unknown validation rule {rule!r}")


def _message(rule: str, params: list[str], attribute: str, value: Any, rules: list[str]) -> str:
    name = display_name(attribute)
    if rule in _SIZE_MESSAGES:
        variant = _size(value, "numeric" in rules or "integer" in rules)[1]
        return _SIZE_MESSAGES[rule][variant].format(attribute=name, value=params[0])
    return _MESSAGES[rule].format(attribute=name, values=", ".join(params))


def _parse_rules(spec: str) -> list[tuple[str, list[str]]]:
    parsed = []
    for part in spec.split("|"):
        name, _, arg = part.partition(":")
        params = [arg] if name == "regex" else (arg.split(",") if arg else [])
        parsed.append((name, params))
    return parsed


def validate(data: Mapping[str, Any], rules: Mapping[str, str]) -> Errors:
    """Check ``data`` against Laravel rule strings; return the errors bag (empty when valid)."""
    errors: Errors = {}
    for pattern, spec in rules.items():
        parsed = _parse_rules(spec)
        names = [name for name, _ in parsed]
        for attribute in _expand(data, pattern):
            value = _get(data, attribute.split("."))
            for rule, params in parsed:
                if rule in ("nullable", "sometimes", "bail"):
                    continue
                if rule not in _IMPLICIT_RULES:
                    # Laravel skips every other rule for absent fields and blank strings, and
                    # for null only when the field is `nullable`.
                    if value is _MISSING or (isinstance(value, str) and value.strip() == ""):
                        continue
                    if value is None and "nullable" in names:
                        continue
                if not _passes(rule, params, value, names):
                    errors.setdefault(attribute, []).append(_message(rule, params, attribute, value, names))
                    if rule in _IMPLICIT_RULES or "bail" in names:
                        break
    return errors


def validate_or_raise(data: Mapping[str, Any], rules: Mapping[str, str]) -> None:
    """``$request->validate(...)``: raise :class:`ValidationFailed` carrying the errors bag."""
    errors = validate(data, rules)
    if errors:
        raise ValidationFailed(errors)
