"""IAM-style policies: parsing with clear errors, and evaluation (explicit Deny wins).

    {"Version": "2012-10-17",
     "Statement": [
       {"Effect": "Allow", "Action": ["medical-imaging:Get*", "medical-imaging:Search*"],
        "Resource": "arn:aws:medical-imaging:us-east-1:000000000000:datastore/DSID*",
        "Condition": {"StringEquals": {"aws:ResourceTag/project": "alpha"}}},
       {"Effect": "Deny", "Action": "medical-imaging:Delete*", "Resource": "*"}]}

Action and Resource take `*` and `?` wildcards (actions match case-insensitively);
NotAction and NotResource are supported. A Resource naming a datastore also covers the
image sets in it (`.../datastore/DSID` matches `.../datastore/DSID/imageset/ISID`).
Condition operators: String(Not)Equals(IgnoreCase), String(Not)Like, (Not)IpAddress,
Bool, Null, Date(Less|Greater)Than(Equals), each with an optional IfExists suffix.
Condition keys: aws:ResourceTag/KEY (an image set's tags over its datastore's),
aws:SourceIp, aws:CurrentTime, medical-imaging:StudyInstanceUID and
medical-imaging:SeriesInstanceUID. Operators are ANDed, keys ANDed, a key's values ORed.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

from tessel.errors import InvalidInput
from tessel.limits import parse_json

MAX_POLICY_BYTES = 64 * 1024
_KNOWN_TOP = {"Version", "Id", "Statement"}
_KNOWN_STATEMENT = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
_BASE_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
    "StringNotLike", "IpAddress", "NotIpAddress", "Bool", "Null", "DateLessThan", "DateLessThanEquals",
    "DateGreaterThan", "DateGreaterThanEquals",
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NotIpAddress"}
_KEY = re.compile(r"(aws:ResourceTag/.{1,128}|aws:SourceIp|aws:CurrentTime|"
                  r"medical-imaging:StudyInstanceUID|medical-imaging:SeriesInstanceUID)", re.IGNORECASE)


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"        # an explicit Deny matched
    IMPLICIT = "implicit"  # nothing matched: denied


# -- wildcards ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def glob(pattern: str, *, fold: bool = False) -> re.Pattern[str]:
    """`*` any run, `?` one character, everything else literal.

    >>> bool(glob("medical-imaging:Get*", fold=True).fullmatch("MEDICAL-IMAGING:GetImageFrame"))
    True
    """
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if fold else 0))


def _closure(pattern: str, states: set[int]) -> set[int]:
    out = set(states)
    for i in sorted(states):
        j = i
        while j < len(pattern) and pattern[j] == "*":
            j += 1
            out.add(j)
    return out


@functools.lru_cache(maxsize=4096)
def prefix_reach(pattern: str, prefix: str) -> tuple[bool, bool]:
    """(may match some string that starts with `prefix`, matches every such string).

    >>> prefix_reach("arn:x:datastore/*", "arn:x:datastore/D/imageset/")
    (True, True)
    >>> prefix_reach("arn:x:datastore/D/imageset/A*", "arn:x:datastore/D/imageset/")
    (True, False)
    >>> prefix_reach("arn:x:datastore/E*", "arn:x:datastore/D/imageset/")
    (False, False)
    """
    states = _closure(pattern, {0})
    for c in prefix:
        nxt: set[int] = set()
        for i in states:
            if i < len(pattern):
                if pattern[i] == "*":
                    nxt.add(i)
                elif pattern[i] == "?" or pattern[i] == c:
                    nxt.add(i + 1)
        states = _closure(pattern, nxt)
        if not states:
            return False, False
    return True, any(i < len(pattern) and set(pattern[i:]) == {"*"} for i in states)


# -- the model ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Condition:
    operator: str       # base operator, without IfExists
    if_exists: bool
    key: str            # as written (matched case-insensitively)
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str | None
    allow: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def matches_action(self, action: str) -> bool:
        hit = any(glob(a, fold=True).fullmatch(action) for a in self.actions)
        return hit != self.not_action

    def matches_resource(self, arns: Sequence[str]) -> bool:
        """`arns`: the resource and the resources that contain it (an image set's datastore)."""
        hit = any(glob(r).fullmatch(arn) for r in self.resources for arn in arns)
        return hit != self.not_resource

    @property
    def uses_resource_tags(self) -> bool:
        return any(c.key.lower().startswith("aws:resourcetag/") for c in self.conditions)


Context = Callable[[str], "list[str] | None"]  # condition key as written -> values, None if absent


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]
    document: Mapping[str, Any]

    @property
    def uses_resource_tags(self) -> bool:
        return any(s.uses_resource_tags for s in self.statements)

    def decide(self, action: str, arns: Sequence[str], context: Context) -> Decision:
        allowed = False
        for s in self.statements:
            if not (s.matches_action(action) and s.matches_resource(arns)):
                continue
            if not all(holds(c, context) for c in s.conditions):
                continue
            if not s.allow:
                return Decision.DENY
            allowed = True
        return Decision.ALLOW if allowed else Decision.IMPLICIT


# -- parsing --------------------------------------------------------------------------------------

def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise InvalidInput(f"{where} must be a non-empty string or list of strings")
    return tuple(items)


def _condition_values(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, (str, int, float)):
            out.append(str(v))
        else:
            raise InvalidInput(f"{where}: condition values are strings, numbers or booleans")
    if not out:
        raise InvalidInput(f"{where}: a condition needs at least one value")
    return tuple(out)


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be an object of operators")
    out: list[Condition] = []
    for operator, block in raw.items():
        base, if_exists = (operator[:-8], True) if operator.endswith("IfExists") else (operator, False)
        if ":" in base:
            raise InvalidInput(f"{where}: set operators ({operator.split(':')[0]}:) are not supported")
        if base not in _BASE_OPERATORS:
            raise InvalidInput(f"{where}: unknown condition operator {operator!r}; supported: "
                               f"{', '.join(sorted(_BASE_OPERATORS))} (each also with IfExists)")
        if not isinstance(block, dict) or not block:
            raise InvalidInput(f"{where}.{operator} must map condition keys to values")
        for key, values in block.items():
            if not _KEY.fullmatch(key):
                raise InvalidInput(f"{where}.{operator}: unknown condition key {key!r}; supported: "
                                   "aws:ResourceTag/KEY, aws:SourceIp, aws:CurrentTime, "
                                   "medical-imaging:StudyInstanceUID, medical-imaging:SeriesInstanceUID")
            vals = _condition_values(values, f"{where}.{operator}.{key}")
            if base in ("IpAddress", "NotIpAddress"):
                for v in vals:
                    try:
                        ipaddress.ip_network(v, strict=False)
                    except ValueError:
                        raise InvalidInput(f"{where}.{operator}.{key}: {v!r} is not an address or network") from None
            if base.startswith("Date"):
                for v in vals:
                    _date(v, f"{where}.{operator}.{key}")
            if base in ("Bool", "Null") and any(v.lower() not in ("true", "false") for v in vals):
                raise InvalidInput(f"{where}.{operator}.{key}: values are true or false")
            out.append(Condition(base, if_exists, key, vals))
    return tuple(out)


def parse_policy(document: Any) -> Policy:
    """A Policy from its JSON object; InvalidInput naming the first thing that is wrong."""
    if isinstance(document, (str, bytes)):
        if len(document) > MAX_POLICY_BYTES:
            raise InvalidInput(f"a policy is at most {MAX_POLICY_BYTES // 1024} KiB")
        document = parse_json(document, "the policy")
    if not isinstance(document, dict):
        raise InvalidInput("a policy is a JSON object with a Statement list")
    unknown = set(document) - _KNOWN_TOP
    if unknown:
        raise InvalidInput(f"policy: unknown field(s) {', '.join(sorted(unknown))}")
    raw = document.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a policy needs a Statement list with at least one statement")
    statements = []
    for n, s in enumerate(raw, 1):
        where = f"Statement {n}"
        if not isinstance(s, dict):
            raise InvalidInput(f"{where} must be an object")
        unknown = set(s) - _KNOWN_STATEMENT
        if unknown:
            raise InvalidInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        if s.get("Effect") not in ("Allow", "Deny"):
            raise InvalidInput(f"{where}: Effect must be \"Allow\" or \"Deny\"")
        if ("Action" in s) == ("NotAction" in s):
            raise InvalidInput(f"{where}: give exactly one of Action and NotAction")
        if ("Resource" in s) and ("NotResource" in s):
            raise InvalidInput(f"{where}: give at most one of Resource and NotResource")
        actions = _strings(s.get("Action", s.get("NotAction")), f"{where}.Action")
        for a in actions:
            if a != "*" and ":" not in a:
                raise InvalidInput(f"{where}.Action: {a!r} is not service:Action (e.g. medical-imaging:GetImageFrame)")
        resources = _strings(s.get("Resource", s.get("NotResource", "*")), f"{where}.Resource")
        statements.append(Statement(
            sid=s.get("Sid") if isinstance(s.get("Sid"), str) else None, allow=s["Effect"] == "Allow",
            actions=actions, not_action="NotAction" in s, resources=resources, not_resource="NotResource" in s,
            conditions=_conditions(s["Condition"], f"{where}.Condition") if "Condition" in s else ()))
    return Policy(tuple(statements), document)


# -- conditions -----------------------------------------------------------------------------------

def _date(text: str, where: str = "date") -> dt.datetime:
    try:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return dt.datetime.fromtimestamp(float(text), dt.timezone.utc)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{where}: {text!r} is not an ISO 8601 time or epoch seconds") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _one(operator: str, actual: str, wanted: str) -> bool:
    if operator in ("StringEquals", "StringNotEquals"):
        return actual == wanted
    if operator in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return actual.lower() == wanted.lower()
    if operator in ("StringLike", "StringNotLike"):
        return bool(glob(wanted).fullmatch(actual))
    if operator in ("IpAddress", "NotIpAddress"):
        try:
            address = ipaddress.ip_address(actual.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        network = ipaddress.ip_network(wanted, strict=False)
        return address.version == network.version and address in network
    if operator == "Bool":
        return actual.lower() == wanted.lower()
    a, w = _date(actual), _date(wanted)
    return {"DateLessThan": a < w, "DateLessThanEquals": a <= w, "DateGreaterThan": a > w,
            "DateGreaterThanEquals": a >= w}[operator]


def holds(c: Condition, context: Context) -> bool:
    actual = context(c.key)
    if c.operator == "Null":
        return (actual is None) == (c.values[0].lower() == "true")
    if actual is None:
        return c.if_exists or c.operator in _NEGATED
    hit = any(_one(c.operator, a, w) for a in actual for w in c.values)
    return not hit if c.operator in _NEGATED else hit
