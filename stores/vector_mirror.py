"""An in-memory mirror of one local-mode Qdrant collection, for fast exact search.

qdrant-client's local mode scores every query by re-normalising its stored vectors (float64 after a
reload) and evaluates filters in Python, point by point: about half a second per query at
10k x 4096. The process that owns a local folder is its only writer, so it can keep a mirror that
stays exact: one contiguous L2-normalised float32 matrix, plus one column per filterable payload
field (keyword codes, numbers, datetimes as microseconds). A search is then a vectorised filter
mask, one matrix-vector product and a partial sort.

Semantics follow qdrant-client's local search (the store this replaces): cosine score, hits with a
score strictly above `score_threshold`, `offset` then `limit` over the ranked hits, points without
the named vector never returned. Filters the columns cannot answer exactly (conditions other than
match/range on a mirrored field, or a field whose values are shaped unusually, e.g. a list of
numbers) make `search` return None: the caller asks Qdrant itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = datetime.resolution  # one microsecond
_NO_TIME = np.iinfo(np.int64).min  # datetime column: no value (matches no range)
_SCREEN_MARGIN = 1e-4  # float32 screening error bound before exact float64 rescoring


@dataclass
class Query:
    vector: Any
    filter: Any = None  # a qdrant models.Filter
    limit: int = 10
    offset: int = 0
    score_threshold: float | None = None


class Unsupported(Exception):
    """This filter cannot be answered from the columns."""


def _key(value: Any) -> tuple[str, Any] | None:
    """Keyword identity with Qdrant's exact-match rules: bool, int and str never equal each other,
    floats never match a keyword condition."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, str):
        return ("s", value)
    return None


def _micros(dt: datetime | date) -> int:
    if not isinstance(dt, datetime):
        dt = datetime.combine(dt, datetime.min.time())
    if dt.tzinfo is None:  # Qdrant reads naive datetimes as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def _parse_time(value: Any) -> int:
    from qdrant_client.local.datetime_utils import parse  # the formats local mode accepts

    dt = parse(value) if isinstance(value, str) else None
    return _NO_TIME if dt is None else _micros(dt)


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


class _Keyword:
    """Codes of each row's values (a row may hold a list), -1 padding; odd rows hold nested values."""

    def __init__(self, cap: int) -> None:
        self.codes = np.full((cap, 1), -1, dtype=np.int32)
        self.vocab: dict[tuple[str, Any], int] = {}

    def resize(self, cap: int) -> None:
        grown = np.full((cap, self.codes.shape[1]), -1, dtype=np.int32)
        n = min(cap, len(self.codes))
        grown[:n] = self.codes[:n]
        self.codes = grown

    def set(self, row: int, value: Any) -> bool:
        values = [] if value is None else _as_list(value)
        codes = [self.vocab.setdefault(k, len(self.vocab)) for k in map(_key, values) if k is not None]
        if len(codes) > self.codes.shape[1]:
            wide = np.full((len(self.codes), len(codes)), -1, dtype=np.int32)
            wide[:, :self.codes.shape[1]] = self.codes
            self.codes = wide
        self.codes[row] = -1
        self.codes[row, :len(codes)] = codes
        return any(isinstance(v, (list, dict)) for v in values)

    def move(self, src: int, dst: int) -> None:
        self.codes[dst] = self.codes[src]

    def match(self, n: int, values: Iterable[Any]) -> np.ndarray:
        wanted = [self.vocab[k] for k in map(_key, values) if k is not None and k in self.vocab]
        if not wanted:
            return np.zeros(n, dtype=bool)
        return np.isin(self.codes[:n], wanted).any(axis=1)


class _Scalar:
    """One number (float64, NaN: none) or one datetime (int64 microseconds) per row."""

    def __init__(self, cap: int, time: bool) -> None:
        self.time = time
        self.values = np.full(cap, _NO_TIME, dtype=np.int64) if time else np.full(cap, np.nan)

    def resize(self, cap: int) -> None:
        grown = np.full(cap, _NO_TIME if self.time else np.nan, dtype=self.values.dtype)
        n = min(cap, len(self.values))
        grown[:n] = self.values[:n]
        self.values = grown

    def set(self, row: int, value: Any) -> bool:
        if self.time:
            self.values[row] = _parse_time(value)
        else:  # Qdrant ranges skip booleans and non-numbers
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            self.values[row] = float(value) if number else np.nan
        return isinstance(value, (list, dict))

    def move(self, src: int, dst: int) -> None:
        self.values[dst] = self.values[src]

    def between(self, n: int, r: Any) -> np.ndarray:
        v = self.values[:n]
        if self.time:
            bound = _micros
            mask = v != _NO_TIME
        else:
            bound = float
            mask = ~np.isnan(v)
        for op, limit in ((np.less, r.lt), (np.less_equal, r.lte), (np.greater, r.gt), (np.greater_equal, r.gte)):
            if limit is not None:
                mask &= op(v, bound(limit))
        return mask


class VectorMirror:
    """Rows 0..n-1 are the live points; a deleted point's slot takes the last row (swap-remove)."""

    def __init__(self, dim: int, fields: dict[str, str], capacity: int = 1024) -> None:
        self.dim = dim
        self.n = 0
        self.matrix = np.zeros((capacity, dim), dtype=np.float32)
        self.has_vector = np.zeros(capacity, dtype=bool)
        self.ids: list[Any] = []
        self.payloads: list[dict[str, Any]] = []
        self.row: dict[Any, int] = {}
        self.columns: dict[str, _Keyword | _Scalar] = {
            f: _Keyword(capacity) if kind == "keyword" else _Scalar(capacity, time=kind == "datetime")
            for f, kind in fields.items()}
        self.odd = {f: np.zeros(capacity, dtype=bool) for f in fields}  # rows shaped unlike the column

    def __len__(self) -> int:
        return self.n

    # ---- writes ---------------------------------------------------------------------------------

    def put(self, point_id: Any, vector: Any, payload: dict[str, Any] | None) -> None:
        """Insert or overwrite a point; `vector` None means the point lacks the named vector."""
        row = self.row.get(point_id)
        if row is None:
            row = self.n
            if row == len(self.matrix):
                self._resize(max(1024, 2 * row))
            self.n += 1
            self.ids.append(point_id)
            self.payloads.append({})
            self.row[point_id] = row
        payload = payload or {}
        self.payloads[row] = payload
        if vector is None:
            self.has_vector[row] = False
        else:
            v = np.asarray(vector, dtype=np.float32).reshape(-1)
            if v.shape[0] != self.dim:
                raise ValueError(f"point {point_id}: a {v.shape[0]}-dim vector in a {self.dim}-dim mirror")
            norm = np.linalg.norm(v)
            self.matrix[row] = v / norm if norm > 1e-12 else v  # as Qdrant stores cosine vectors
            self.has_vector[row] = True
        for f, col in self.columns.items():
            self.odd[f][row] = col.set(row, payload.get(f))

    def remove(self, point_id: Any) -> None:
        row = self.row.pop(point_id, None)
        if row is None:
            return
        last = self.n - 1
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.has_vector[row] = self.has_vector[last]
            self.ids[row], self.payloads[row] = self.ids[last], self.payloads[last]
            self.row[self.ids[row]] = row
            for f, col in self.columns.items():
                col.move(last, row)
                self.odd[f][row] = self.odd[f][last]
        self.ids.pop()
        self.payloads.pop()
        self.n = last

    def _resize(self, cap: int) -> None:
        matrix = np.zeros((cap, self.dim), dtype=np.float32)
        matrix[:self.n] = self.matrix[:self.n]
        self.matrix = matrix
        self.has_vector = np.concatenate([self.has_vector[:self.n], np.zeros(cap - self.n, dtype=bool)])
        for f, col in self.columns.items():
            col.resize(cap)
            self.odd[f] = np.concatenate([self.odd[f][:self.n], np.zeros(cap - self.n, dtype=bool)])

    # ---- reads ----------------------------------------------------------------------------------

    def vector(self, point_id: Any) -> np.ndarray | None:
        row = self.row.get(point_id)
        return None if row is None or not self.has_vector[row] else self.matrix[row].copy()

    def mask(self, flt: Any) -> np.ndarray:
        """Rows a qdrant `models.Filter` accepts; raises Unsupported when the columns cannot say."""
        from qdrant_client import models

        n = self.n
        out = np.ones(n, dtype=bool)
        if flt is None:
            return out
        if flt.min_should is not None:
            raise Unsupported("min_should")
        for cond in _as_list(flt.must) if flt.must is not None else []:
            out &= self._condition(cond, models)
        for cond in _as_list(flt.must_not) if flt.must_not is not None else []:
            out &= ~self._condition(cond, models)
        should = _as_list(flt.should) if flt.should is not None else []
        if should:  # an empty `should` is no constraint
            any_of = np.zeros(n, dtype=bool)
            for cond in should:
                any_of |= self._condition(cond, models)
            out &= any_of
        return out

    def _condition(self, cond: Any, models: Any) -> np.ndarray:
        if isinstance(cond, models.Filter):
            return self.mask(cond)
        if not isinstance(cond, models.FieldCondition) or cond.key not in self.columns:
            raise Unsupported(f"condition {type(cond).__name__} on {getattr(cond, 'key', None)!r}")
        if cond.values_count is not None or cond.is_empty is not None or cond.is_null is not None or (
                cond.geo_bounding_box or cond.geo_radius or cond.geo_polygon) is not None:
            raise Unsupported(f"condition kind on {cond.key!r}")
        if self.odd[cond.key][:self.n].any():
            raise Unsupported(f"field {cond.key!r} holds nested values")
        col = self.columns[cond.key]
        if cond.match is not None and isinstance(col, _Keyword):
            if isinstance(cond.match, models.MatchValue):
                return col.match(self.n, [cond.match.value])
            if isinstance(cond.match, models.MatchAny):
                return col.match(self.n, cond.match.any)
        if cond.range is not None and isinstance(col, _Scalar):
            if isinstance(cond.range, models.DatetimeRange) == col.time:
                return col.between(self.n, cond.range)
        raise Unsupported(f"this condition on {cond.key!r}")

    def search(self, query: Any, flt: Any = None, *, limit: int = 10, offset: int = 0,
               score_threshold: float | None = None) -> list[tuple[Any, float, dict[str, Any]]] | None:
        """Ranked (point id, cosine score, payload) rows; None when the filter needs Qdrant itself."""
        out = self.search_many([Query(query, flt, limit, offset, score_threshold)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def search_many(self, queries: list[Query]) -> list[list[tuple[Any, float, dict[str, Any]]] | None | Exception]:
        """Several searches: each query's answer, or None, or the ValueError it raised. Scoring stays
        one matrix-vector product per query: on the 2-core machine this was measured on, a GEMM over
        2 queries took 3x as long as two GEMVs (scoring is compute-bound there, not memory-bound)."""
        out: list[Any] = [None] * len(queries)
        for i, q in enumerate(queries):
            try:
                plan = self._plan(q)
            except ValueError as e:
                out[i] = e
                continue
            if plan is None or len(plan[1]) == 0 or q.limit <= 0:
                out[i] = None if plan is None else []
                continue
            q64, cand = plan
            q32 = q64.astype(np.float32)
            if len(cand) * 2 < self.n:  # a selective filter: score only its rows
                s32 = self.matrix[cand] @ q32
            else:
                s32 = (self.matrix[:self.n] @ q32)[cand]
            out[i] = self._ranked(q, q64, cand, s32)
        return out

    def _plan(self, q: Query) -> tuple[np.ndarray, np.ndarray] | None:
        """The unit query and the candidate rows; None when the filter needs Qdrant itself."""
        q64 = np.asarray(q.vector, dtype=np.float64).reshape(-1)
        if q64.shape[0] != self.dim:
            raise ValueError(f"a {q64.shape[0]}-dim query for {self.dim}-dim vectors")
        if not np.isfinite(q64).all():
            raise ValueError("the query vector holds NaN or infinite values")
        try:
            accepted = self.mask(q.filter)
        except Unsupported:
            return None
        norm = np.linalg.norm(q64)
        return (q64 / norm if norm != 0.0 else q64), np.flatnonzero(accepted & self.has_vector[:self.n])

    def _ranked(self, q: Query, q64: np.ndarray, cand: np.ndarray, s32: np.ndarray) -> list:
        # The float32 scores only screen; the survivors are rescored in float64 as Qdrant does, so
        # scores and order agree with it to rounding.
        want = q.offset + q.limit
        keep = np.ones(len(cand), dtype=bool)
        if q.score_threshold is not None:
            keep &= s32 > q.score_threshold - _SCREEN_MARGIN
        kept = s32[keep]
        if len(kept) > want:
            kth = np.partition(kept, len(kept) - want)[len(kept) - want]
            keep &= s32 >= kth - _SCREEN_MARGIN
        rows = cand[keep]
        s64 = self.matrix[rows].astype(np.float64) @ q64
        order = np.argsort(-s64, kind="stable")
        if q.score_threshold is not None:
            order = order[s64[order] > q.score_threshold]
        order = order[q.offset:want]
        return [(self.ids[r], float(s), self.payloads[r]) for r, s in zip(rows[order], s64[order])]
