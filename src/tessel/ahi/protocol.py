"""The rest-json protocol of botocore's `medical-imaging` model: operations, request parsing.

Paths, methods, member locations (URI label, query string, payload, body) and
types all come from service-2.json, as moto derives its routes; the route
functions receive plain Python values keyed by the model's member names.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import unquote

import botocore.session
from botocore import xform_name
from botocore.model import OperationModel, ServiceModel, StructureShape

from tessel.ahi.errors import BadRequest
from tessel.ahi.validation import ValidationError, check_required, convert, convert_scalar_text

SERVICE = "medical-imaging"
_LABEL = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")


@dataclass(frozen=True, slots=True)
class Operation:
    name: str          # CreateDatastore
    function: str      # create_datastore, the route function's name
    method: str
    uri: str           # the model's requestUri
    route: str         # the Starlette path
    raw_path: re.Pattern[str]  # matches the still percent-encoded path
    model: OperationModel

    @property
    def malformed_is_bad_request(self) -> bool:
        """The model gives this operation BadRequestException ("the request is invalid or malformed")."""
        return any(e.name == "BadRequestException" for e in self.model.error_shapes)

    @property
    def input_shape(self) -> StructureShape:
        shape = self.model.input_shape
        assert isinstance(shape, StructureShape)
        return shape


@functools.lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model(SERVICE)


def _route(op: OperationModel) -> str:
    shape = op.input_shape
    assert isinstance(shape, StructureShape)

    def label(m: re.Match[str]) -> str:
        name = m.group(1)
        # ARNs travel fully percent-encoded but decode to several segments.
        return f"{{{name}:path}}" if shape.members[name].name == "Arn" else f"{{{name}}}"

    return _LABEL.sub(label, op.http["requestUri"])


def _raw_path_pattern(uri: str) -> re.Pattern[str]:
    parts, last = [], 0
    for m in _LABEL.finditer(uri):
        parts.append(re.escape(uri[last:m.start()]))
        parts.append(f"(?P<{m.group(1)}>[^/]+)")
        last = m.end()
    parts.append(re.escape(uri[last:]))
    return re.compile("".join(parts))


@functools.lru_cache(maxsize=1)
def operations() -> tuple[Operation, ...]:
    model = service_model()
    ops = []
    for name in model.operation_names:
        op = model.operation_model(name)
        ops.append(Operation(name=name, function=xform_name(name), method=op.http["method"],
                             uri=op.http["requestUri"], route=_route(op),
                             raw_path=_raw_path_pattern(op.http["requestUri"]), model=op))
    return tuple(ops)


def _json_body(op: Operation, body: bytes, where: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        message = f"the request body is not valid JSON (at '{where}')"
        if op.malformed_is_bad_request:
            raise BadRequest(message) from None
        raise ValidationError(where, message) from None


def parse_request(op: Operation, *, raw_path: str, path_params: Mapping[str, str],
                  query: Iterable[tuple[str, str]], body: bytes) -> dict[str, Any]:
    """The operation's input members, converted and checked against the model."""
    shape = op.input_shape
    params: dict[str, Any] = {}
    raw = op.raw_path.fullmatch(raw_path)
    query_items = list(query)
    body_members: dict[str, Any] = {}
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if where == "uri":
            text = unquote(raw.group(wire_name)) if raw else path_params.get(wire_name)
            if text is not None:
                params[name] = convert_scalar_text(member, text, name)
        elif where == "querystring":
            values = [v for k, v in query_items if k == wire_name]
            if not values:
                if member.type_name == "list" and name in shape.required_members:
                    params[name] = []  # an empty list has no query parameter to travel in
                continue
            if member.type_name == "list":
                converted = convert(member, values, name)
                params[name] = converted
            else:
                params[name] = convert_scalar_text(member, values[-1], name)
        elif where == "header":
            continue  # no input member of this model travels in a header
        elif name == payload:
            if member.type_name in ("blob", "string"):
                params[name] = body if member.type_name == "blob" else body.decode("utf-8", "replace")
            else:
                value = _json_body(op, body, name)
                if value is not None:
                    params[name] = convert(member, value, name)
        else:
            body_members[name] = member
    if body_members:
        value = _json_body(op, body, "body")
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ValidationError("body", "the request body must be a JSON object")
        for name, member in body_members.items():
            if value.get(name) is not None:
                params[name] = convert(member, value[name], name)
    check_required(shape, params, "")
    return params
