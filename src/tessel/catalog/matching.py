"""DICOM attribute matching (PS3.4 C.2.2.2): one parsed condition, two evaluators.

A query string becomes a `Condition` once (`parse`); `to_sql` turns it into a
WHERE clause on an index column and `matches` tests a value from the document,
so indexed and unindexed attributes follow the same rules:

- empty or `*` is universal matching (no constraint);
- `a\\b` (and, for UIDs, `a,b`) is list matching: any of the values;
- `*` and `?` are wildcards (case-sensitive, except person names);
- `A-B`, `A-` and `-B` are range matching for DA, TM and DT;
- person names match case-insensitively, on the whole value or its alphabetic group;
  fuzzy matching matches word prefixes in any order, ignoring `^`, `,` and spaces
  (a value with wildcards also matches as a wildcard, as OHIF sends "*doe*").

>>> name_words("Doe^John"), name_words("john  doe")
(' doe john ', ' doe john ')
>>> matches(parse("DOE*", "pn"), "Doe^John"), matches(parse("jo do", "pn", fuzzy=True), "Doe^John")
(True, True)
>>> matches(parse("20240101-20240131", "date"), "20240115"), matches(parse("1015", "time"), "101500.25")
(True, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

Kind = Literal["text", "pn", "uid", "date", "time", "datetime", "int", "multi"]
_RANGE_KINDS = frozenset({"date", "time", "datetime"})
_WORD_SPLIT = re.compile(r"[\s^,=]+")


@dataclass(frozen=True, slots=True)
class Term:
    """One value of a condition: exact, a wildcard pattern, or a range (lo/hi normalised)."""

    value: str
    wildcard: bool = False
    lo: str | None = None
    hi: str | None = None

    @property
    def is_range(self) -> bool:
        return self.lo is not None or self.hi is not None


@dataclass(frozen=True, slots=True)
class Condition:
    kind: Kind
    terms: tuple[Term, ...]
    fuzzy: bool = False


# -- normalisation (the index columns hold these forms) -----------------------------------------

def normal_time(value: str | None, *, upper: bool = False) -> str | None:
    """HHMMSS.ffffff; missing digits are 0, or their maximum for the upper end of a range."""
    if not value or not value.strip():
        return None
    whole, _, fraction = value.strip().replace(":", "").partition(".")
    whole = "".join(c for c in whole if c.isdigit())[:6]
    fraction = "".join(c for c in fraction if c.isdigit())[:6]
    if upper:
        return f"{whole + '235959'[len(whole):]}.{fraction + '9' * (6 - len(fraction))}"
    return f"{(whole + '000000')[:6]}.{(fraction + '000000')[:6]}"


def normal_date(value: str | None) -> str | None:
    if not value:
        return None
    digits = value.strip().replace(".", "")  # the old ACR-NEMA YYYY.MM.DD form
    return digits or None


def normal_datetime(value: str | None, *, upper: bool = False) -> str | None:
    """YYYYMMDDHHMMSS.ffffff; a UTC offset is ignored."""
    if not value or not value.strip():
        return None
    text = value.strip()
    cut = max(text.rfind("+"), text.rfind("-"))
    if cut > 4:
        text = text[:cut]
    date, rest = text[:8], text[8:]
    if len(date) < 8:
        date = (date + ("1231" if upper else "0101")[max(0, len(date) - 4):])[:8]
        if upper and len(date) == 8 and date.endswith("00"):
            date = date[:6] + "31"
    time = normal_time(rest, upper=upper) if rest else ("235959.999999" if upper else "000000.000000")
    return f"{date}{time}"


def name_key(value: str | None) -> str | None:
    """A person name as the case-insensitive index column holds it."""
    return value.strip().lower() if value else None


def name_words(value: str | None) -> str | None:
    """' word word ' (lower case, sorted): fuzzy matching finds ' prefix' in it."""
    if not value:
        return None
    words = sorted({w for w in _WORD_SPLIT.split(value.lower()) if w})
    return f" {' '.join(words)} " if words else None


def _normal(kind: Kind, value: str, *, upper: bool = False) -> str | None:
    if kind == "date":
        return normal_date(value)
    if kind == "time":
        return normal_time(value, upper=upper)
    if kind == "datetime":
        return normal_datetime(value, upper=upper)
    return value


# -- parsing ------------------------------------------------------------------------------------

def parse(query: str | None, kind: Kind, *, fuzzy: bool = False) -> Condition | None:
    """The condition a query string states; None for universal matching."""
    if query is None:
        return None
    text = query.strip() if kind != "text" else query.rstrip(" ")
    if text in ("", "*"):
        return None
    pieces = re.split(r"[\\,]", text) if kind == "uid" else text.split("\\")
    terms = []
    for piece in pieces:
        piece = piece.strip() if kind != "text" else piece.rstrip(" ")
        if not piece:
            continue
        if kind in _RANGE_KINDS and "-" in piece and not (kind == "datetime" and _has_offset(piece)):
            lo, _, hi = piece.partition("-")
            terms.append(Term(piece, lo=_normal(kind, lo) if lo else None,
                              hi=_normal(kind, hi, upper=True) if hi else None))
        elif kind in ("time", "datetime"):
            terms.append(Term(piece, lo=_normal(kind, piece), hi=_normal(kind, piece, upper=True)))
        else:
            terms.append(Term(piece, wildcard=kind != "uid" and ("*" in piece or "?" in piece)))
    if not terms:
        return None
    return Condition(kind, tuple(terms), fuzzy=fuzzy and kind == "pn")


def _has_offset(piece: str) -> bool:
    # "20240101120000-0500" is one DT value with a UTC offset, not a range.
    return re.fullmatch(r"\d{10,14}(\.\d{1,6})?[+-]\d{4}", piece) is not None


# -- SQL ---------------------------------------------------------------------------------------

def _glob(column: Any, parts: list[tuple[str, bool]], dialect: str) -> ColumnElement[bool]:
    """column matches the concatenated parts; a part with True carries DICOM wildcards."""
    if dialect == "sqlite":
        # GLOB is case-sensitive and uses * and ? as DICOM does; only [ needs escaping.
        text = "".join(p.replace("[", "[[]") if wild else
                       p.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]") for p, wild in parts)
        return column.op("GLOB")(text)  # type: ignore[no-any-return]
    out = []
    for p, wild in parts:
        p = p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        out.append(p.replace("*", "%").replace("?", "_") if wild else p)
    return column.like("".join(out), escape="\\")  # type: ignore[no-any-return]


def to_sql(condition: Condition, column: Any, dialect: str, words: Any = None) -> ColumnElement[bool]:
    """The WHERE clause for `condition` on an index column (in the column's normal form)."""
    clauses = [_term_sql(condition, term, column, dialect, words) for term in condition.terms]
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def _term_sql(condition: Condition, term: Term, column: Any, dialect: str, words: Any) -> ColumnElement[bool]:
    kind = condition.kind
    if term.is_range or kind in ("time", "datetime"):
        parts = []
        if term.lo is not None:
            parts.append(column >= term.lo)
        if term.hi is not None:
            parts.append(column <= term.hi)
        return sa.and_(*parts)
    if kind == "pn":
        value = term.value.lower()
        # The whole value, or its alphabetic group (before the first '=').
        exact = sa.or_(_glob(column, [(value, True)], dialect), _glob(column, [(value, True), ("=*", True)], dialect))
        if condition.fuzzy and words is not None:
            tokens = fuzzy_tokens(term.value)
            if not tokens:
                return sa.true()
            fuzzy = sa.and_(*[_glob(words, [("*", True), (" " + t, False), ("*", True)], dialect) for t in tokens])
            # OHIF sends "*doe*" with fuzzymatching=true: a wildcard still matches as a wildcard.
            return sa.or_(fuzzy, exact) if term.wildcard else fuzzy
        return exact
    if kind == "int":
        try:
            return column == int(term.value)  # type: ignore[no-any-return]
        except ValueError:
            return sa.false()
    if kind == "multi":
        return _glob(column, [("*\\", True), (term.value, term.wildcard), ("\\*", True)], dialect)
    if kind == "date":
        return column == normal_date(term.value)  # type: ignore[no-any-return]
    if term.wildcard:
        return _glob(column, [(term.value, True)], dialect)
    return column == term.value  # type: ignore[no-any-return]


def fuzzy_tokens(value: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(value.lower().replace("*", " ").replace("?", " ")) if w]


# -- Python (attributes without an index column) -------------------------------------------------

def _wildcard_re(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):  # a bulk data reference or an SQ item: nothing to match as text
        return []
    return [str(value).strip()]


def matches(condition: Condition | None, value: Any) -> bool:
    """Whether a document value (string, number or list of them) satisfies `condition`."""
    if condition is None:
        return True
    values = _strings(value)
    if not values:
        return False
    return any(_term_matches(condition, term, v) for term in condition.terms for v in values)


def _term_matches(condition: Condition, term: Term, value: str) -> bool:
    kind = condition.kind
    if term.is_range or kind in ("time", "datetime"):
        lo_value = _normal(kind, value)
        hi_value = lo_value
        if lo_value is None or hi_value is None:
            return False
        return (term.lo is None or hi_value >= term.lo) and (term.hi is None or lo_value <= term.hi)
    if kind == "pn":
        rx = _wildcard_re(term.value, ignore_case=True)
        exact = bool(rx.fullmatch(value) or rx.fullmatch(value.split("=", 1)[0]))
        if condition.fuzzy:
            words = (name_words(value) or "").split()
            fuzzy = all(any(w.startswith(t) for w in words) for t in fuzzy_tokens(term.value))
            return fuzzy or (term.wildcard and exact)
        return exact
    if kind == "int":
        try:
            return int(value) == int(term.value)
        except ValueError:
            return False
    if kind == "date":
        return normal_date(value) == normal_date(term.value)
    if term.wildcard:
        return bool(_wildcard_re(term.value, ignore_case=False).fullmatch(value))
    return value == term.value


def kind_for_vr(vr: str) -> Kind:
    return {"PN": "pn", "DA": "date", "TM": "time", "DT": "datetime", "UI": "uid"}.get(vr, "text")
