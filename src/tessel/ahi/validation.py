"""Input checking derived from botocore's own service model.

botocore checks only `required`, types and `min` client-side; the server must
enforce `max`, `pattern` and enums too. Every check here is read from the
shapes in service-2.json, so a model update brings its constraints along.
Messages follow AWS's wording and name the member path
("Value '100' at 'maxResults' failed to satisfy constraint: ...").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import math
import re
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from tessel.errors import InvalidInput

# file URIs are tessel's local import locations (AHI itself only knows s3://): file:///path, and
# file:/path too, since the AWS CLI reads any argument starting with file:// as a local file.
PATTERN_OVERRIDES = {
    "S3Uri": r"(s3://[a-z0-9][\.\-a-z0-9]{1,61}[a-z0-9](/.*)?)|(file:(//(localhost)?)?/.*)",
}
# Java regex classes that Python's re lacks (the model uses them outside brackets only).
_JAVA_CLASSES = {r"\p{ASCII}": r"[\x00-\x7F]"}


class ValidationError(InvalidInput):
    """One constraint of the model failed; `field` is the member path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"1 validation error detected: {message}", field=field)
        self.field = field


@functools.lru_cache(maxsize=None)
def _pattern(shape_name: str, pattern: str) -> re.Pattern[str]:
    source = PATTERN_OVERRIDES.get(shape_name, pattern)
    for java, python in _JAVA_CLASSES.items():
        source = source.replace(java, python)
    return re.compile(source, re.DOTALL)


def compiled_pattern(shape: Shape) -> re.Pattern[str] | None:
    pattern = shape.metadata.get("pattern")
    return _pattern(shape.name, pattern) if pattern is not None else None


def _shown(shape: Shape, value: Any) -> str:
    if shape.metadata.get("sensitive"):
        return "*** Sensitive Data Redacted ***"
    text = str(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _fail(shape: Shape, path: str, value: Any, constraint: str) -> ValidationError:
    return ValidationError(path, f"Value '{_shown(shape, value)}' at '{path}' failed to satisfy "
                                 f"constraint: {constraint}")


def _length(shape: Shape, path: str, value: Any, size: int, what: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        raise _fail(shape, path, value, f"Member must have {what} greater than or equal to {low}")
    if high is not None and size > high:
        raise _fail(shape, path, value, f"Member must have {what} less than or equal to {high}")


def _range(shape: Shape, path: str, value: int | float) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        raise _fail(shape, path, value, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        raise _fail(shape, path, value, f"Member must have value less than or equal to {high}")


def check_string(shape: Shape, path: str, value: str) -> str:
    _length(shape, path, value, len(value), "length")
    enum = getattr(shape, "enum", None) or []
    if enum and value not in enum:
        raise _fail(shape, path, value, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    pattern = compiled_pattern(shape)
    # An empty value where the model allows length 0 is "absent", not a pattern mismatch.
    if pattern is not None and value and not pattern.fullmatch(value):
        raise _fail(shape, path, value, f"Member must satisfy regular expression pattern: "
                                        f"{shape.metadata['pattern']}")
    return value


def _timestamp(shape: Shape, path: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(shape, path, value, "Member must be a timestamp")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise _fail(shape, path, value, "Member must be a timestamp")
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(shape, path, value, "Member must be a timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.timezone.utc)
        return parsed.timestamp()
    raise _fail(shape, path, value, "Member must be a timestamp")


def convert(shape: Shape, value: Any, path: str) -> Any:
    """A JSON value checked against `shape` and turned into Python values
    (blobs decoded from base64, timestamps as epoch floats)."""
    kind = shape.type_name
    if value is None:
        return None
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise _fail(shape, path, "...", "Member must be a structure")
        return convert_structure(shape, value, path)
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            raise _fail(shape, path, value, "Member must be a list")
        _length(shape, path, "[...]", len(value), "length")
        return [convert(shape.member, item, f"{path}.{i + 1}.member") for i, item in enumerate(value)]
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            raise _fail(shape, path, value, "Member must be a map")
        _length(shape, path, "{...}", len(value), "length")
        return {convert(shape.key, k, f"{path}.key"): convert(shape.value, v, f"{path}.{k}")
                for k, v in value.items()}
    if kind == "string":
        if not isinstance(value, str):
            raise _fail(shape, path, value, "Member must be a string")
        return check_string(shape, path, value)
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(shape, path, value, "Member must be an integer")
        _range(shape, path, value)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(shape, path, value, "Member must be a number")
        _range(shape, path, value)
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(shape, path, value, "Member must be a boolean")
        return value
    if kind == "blob":
        if not isinstance(value, str):
            raise _fail(shape, path, "...", "Member must be base64-encoded binary data")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(shape, path, "...", "Member must be base64-encoded binary data") from None
        _length(shape, path, "...", len(data), "length")
        return data
    if kind == "timestamp":
        return _timestamp(shape, path, value)
    raise _fail(shape, path, value, f"unsupported type {kind}")  # pragma: no cover - model has no others


def convert_structure(shape: StructureShape, value: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if name in value and value[name] is not None:
            out[name] = convert(member, value[name], f"{path}.{name}" if path else name)
    check_required(shape, out, path)
    if shape.metadata.get("union"):
        if len(out) != 1:
            raise ValidationError(path or shape.name, f"Value at '{path or shape.name}' failed to satisfy "
                                  f"constraint: exactly one of [{', '.join(shape.members)}] must be set")
    return out


def check_required(shape: StructureShape, value: dict[str, Any], path: str) -> None:
    for name in shape.required_members:
        if value.get(name) is None:
            where = f"{path}.{name}" if path else name
            raise ValidationError(where, f"Value null at '{where}' failed to satisfy constraint: "
                                         f"Member must not be null")


def convert_scalar_text(shape: Shape, raw: str, path: str) -> Any:
    """A URI label or query-string value (text on the wire) as the shape's type."""
    kind = shape.type_name
    if kind == "string":
        return check_string(shape, path, raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _fail(shape, path, raw, "Member must be true or false")
        return raw == "true"
    if kind in ("integer", "long"):
        try:
            number = int(raw)
        except ValueError:
            raise _fail(shape, path, raw, "Member must be an integer") from None
        _range(shape, path, number)
        return number
    if kind == "timestamp":
        return _timestamp(shape, path, raw)
    raise _fail(shape, path, raw, f"unsupported {kind} in the URI")  # pragma: no cover
