"""Search requests' filters: the documented ``where`` mapping, validated, in each store's terms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medgraph.errors import MedgraphError


class InvalidQueryError(MedgraphError, ValueError):
    """A search request is malformed: empty query, unknown mode, bad ``k`` or bad filter."""


@dataclass(frozen=True)
class SearchFilter:
    """Restrict a search to a year range, a set of documents and/or the uploads it may see.

    Build it from the documented ``where`` mapping with :meth:`parse`::

        {"year": {"gte": 2010, "lte": 2015}}     # 2010..2015 inclusive; {"year": 2012} for one year
        {"source_ids": ["21645374", "10808977"]}  # only these documents
        {"origins": ["upload:3f2a..."]}           # the operator's corpus plus these uploads only

    Keys combine with AND. Chunks of documents without a year never pass a year filter. Records
    of the operator's corpus (no origin) always pass the origins filter.
    """

    year_min: int | None = None
    year_max: int | None = None
    source_ids: tuple[str, ...] | None = None
    origins: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, where: Mapping[str, Any] | SearchFilter | None) -> SearchFilter:
        """Validate a ``where`` mapping (see the class docstring)."""
        if where is None:
            return cls()
        if isinstance(where, SearchFilter):
            return where
        if not isinstance(where, Mapping):
            raise InvalidQueryError(f"filter must be a mapping, got {type(where).__name__}")
        unknown = set(where) - {"year", "source_ids", "origins"}
        if unknown:
            raise InvalidQueryError(
                f"unknown filter key(s) {', '.join(sorted(map(str, unknown)))}; use 'year' "
                f"({{'gte': 2010, 'lte': 2015}} or a single year), 'source_ids' and/or "
                f"'origins' (lists)"
            )
        year_min = year_max = None
        year = where.get("year")
        if year is not None:
            if isinstance(year, Mapping):
                bad = set(year) - {"gte", "lte"}
                if bad or not year:
                    raise InvalidQueryError(
                        f"year filter {dict(year)!r} must use 'gte' and/or 'lte', e.g. "
                        f"{{'gte': 2010, 'lte': 2015}}"
                    )
                year_min = _year(year.get("gte"))
                year_max = _year(year.get("lte"))
            else:
                year_min = year_max = _year(year)
            if year_min is not None and year_max is not None and year_min > year_max:
                raise InvalidQueryError(f"year filter is empty: gte {year_min} > lte {year_max}")
        source_ids = None
        if "source_ids" in where:
            raw = where["source_ids"]
            if isinstance(raw, str) or not isinstance(raw, Iterable):
                raise InvalidQueryError(
                    f"'source_ids' must be a list of ids, got {type(raw).__name__}"
                )
            source_ids = tuple(str(item) for item in raw)
        origins = None
        if where.get("origins") is not None:
            raw = where["origins"]
            if isinstance(raw, str) or not isinstance(raw, Iterable):
                raise InvalidQueryError(
                    f"'origins' must be a list of upload origins, got {type(raw).__name__}"
                )
            origins = tuple(str(item) for item in raw)
        return cls(year_min, year_max, source_ids, origins)

    @property
    def active(self) -> bool:
        """Whether the filter excludes anything."""
        return (
            self.year_min is not None
            or self.year_max is not None
            or self.source_ids is not None
            or self.origins is not None
        )

    def shows(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a stored chunk passes the origins rule (operator records always do)."""
        origin = metadata.get("origin")
        return self.origins is None or not origin or origin in self.origins

    def chroma_where(self) -> dict[str, Any] | None:
        """The filter as a Chroma ``where`` clause."""
        clauses: list[dict[str, Any]] = []
        if self.year_min is not None:
            clauses.append({"year": {"$gte": self.year_min}})
        if self.year_max is not None:
            clauses.append({"year": {"$lte": self.year_max}})
        if self.source_ids is not None:
            clauses.append({"source_id": {"$in": list(self.source_ids) or [""]}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def milvus_expr(self) -> str:
        """The whole filter, origins rule included, as a Milvus boolean expression ("" for none).

        Strings are double-quoted with backslashes and quotes escaped (Milvus's grammar knows no
        ``\\u`` escapes, so other characters are written as they are).
        """
        clauses: list[str] = []
        if self.year_min is not None:
            clauses.append(f"year >= {self.year_min}")
        if self.year_max is not None:
            clauses.append(f"year <= {self.year_max}")
        if self.source_ids is not None:
            clauses.append(f"source_id in {milvus_strings(self.source_ids or ('',))}")
        if self.origins is not None:
            allowed = ("", *tuple(self.origins))
            clauses.append(f"origin in {milvus_strings(allowed)}")
        return " and ".join(f"({clause})" for clause in clauses)


def milvus_strings(values: Iterable[str]) -> str:
    """``values`` as a Milvus expression's list of string literals, e.g. ``["a", "b"]``."""
    quoted = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "[" + ", ".join(quoted) + "]"


def _year(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQueryError(f"filter years must be integers, got {value!r}")
    return value
