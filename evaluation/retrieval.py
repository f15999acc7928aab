"""Retrieval metrics on unit vectors: text -> video recall@k and MRR, and video -> video
near-duplicate detection at a cosine-similarity threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from evaluation.counts import Counts, mean

KS = (1, 5, 10)
DUPLICATE_SIMILARITY = 0.95


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)


def groups(duplicate_of: Mapping[str, str | None]) -> dict[str, str]:
    """Each video's content group: the original it is (transitively) a copy of, else itself."""
    out = {}
    for vid in duplicate_of:
        root, seen = vid, {vid}
        while (nxt := duplicate_of.get(root)) and nxt in duplicate_of and nxt not in seen:
            root = nxt
            seen.add(root)
        out[vid] = root
    return out


def text_to_video(
    queries: np.ndarray, relevant: Sequence[set[int]], videos: np.ndarray, ks: Sequence[int] = KS, seed: int = 0
) -> dict:
    """Rank every video for each query by cosine similarity; `relevant[q]` are the row numbers of
    the videos that answer query q. Ties are broken in a fixed random order, so constant vectors
    score at chance instead of favouring the first rows."""
    if len(queries) == 0 or len(videos) == 0:
        return {**{f"recall@{k}": None for k in ks}, "mrr": None, "queries": 0, "videos": len(videos)}
    scores = _unit(queries) @ _unit(videos).T
    order = np.random.default_rng(seed).permutation(len(videos))
    ranked = order[np.argsort(-scores[:, order], axis=1, kind="stable")]
    first = []
    for q, rel in enumerate(relevant):
        hits = np.flatnonzero(np.isin(ranked[q], list(rel)))
        first.append(int(hits[0]) + 1 if hits.size else None)
    out = {f"recall@{k}": mean(float(r is not None and r <= k) for r in first) for k in ks}
    out["mrr"] = mean(1.0 / r if r else 0.0 for r in first)
    return {**out, "queries": len(first), "videos": len(videos)}


def near_duplicates(videos: np.ndarray, group_of: Sequence[str], threshold: float = DUPLICATE_SIMILARITY) -> dict:
    """Every pair of videos: predicted a near-duplicate when its similarity reaches `threshold`,
    truly one when both belong to the same content group."""
    counts = Counts()
    if len(videos) >= 2:
        sims = _unit(videos) @ _unit(videos).T
        i, j = np.triu_indices(len(videos), k=1)
        same = np.asarray(group_of, dtype=object)
        actual = same[i] == same[j]
        predicted = sims[i, j] >= threshold
        counts.tp = int(np.sum(predicted & actual))
        counts.fp = int(np.sum(predicted & ~actual))
        counts.fn = int(np.sum(~predicted & actual))
    return {**counts.as_dict(), "threshold": threshold, "videos": len(videos)}
