"""Agglomerative clustering of every embedding of a long file, at bounded cost.

pyannote's agglomerative clustering hands all embeddings to scipy's ``linkage``, whose
distance matrices grow with the square of their number (4 GB for four hours of
conversation). ``cluster_in_windows`` clusters them in two passes instead:

1. Local: the embeddings, in time order, are cut into windows of at most ``window``
   consecutive ones, and each window is clustered as pyannote clusters a short file
   (unit-normalised, ``centroid`` linkage, cut at ``threshold``), keeping every local
   cluster, however small.
2. Global: the local clusters' centroids are merged, closest pair first, each merge's
   centroid the mean of all the embeddings below it (weighted by their numbers), until
   the closest pair is further apart than ``threshold``: the same rule as centroid
   linkage applies to single embeddings. A global cluster then needs ``min_cluster_size``
   embeddings in all (not per window) to stand alone; smaller ones join the closest
   large one, as in pyannote.

So every embedding counts: a speaker who speaks a few minutes of a day-long recording
forms a local cluster wherever they speak, and those meet in the global pass, where
their total is compared with ``min_cluster_size`` as in a short file. Cost: the local
passes grow linearly with the number of embeddings (``window``² memory), the global one
with the square of the number of local clusters (4 bytes each; see bench/README.md for a day). Pure numpy and
scipy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import cdist


def cluster_in_windows(
    embeddings: np.ndarray,
    *,
    threshold: float,
    min_cluster_size: int,
    window: int,
    num_clusters: int | None = None,
    min_clusters: int = 1,
    max_clusters: int | None = None,
    beat: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """0-based cluster of each of ``embeddings`` (N, dimension), in time order (see module docstring).

    ``beat`` is called after every window's clustering (the job is alive).

    ``num_clusters``, when given, picks the global merge step whose number of large
    clusters is closest to it; so do ``min_clusters``/``max_clusters`` when the threshold
    gives a number outside them.
    """
    unit = np.asarray(embeddings, dtype=np.float64)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    local = np.empty(len(unit), dtype=np.int64)
    sums: list[np.ndarray] = []
    sizes: list[int] = []
    num_windows = -(-len(unit) // window)
    for part in np.array_split(np.arange(len(unit)), num_windows):
        labels = _local_clusters(unit[part], threshold)
        beat()
        for label in np.unique(labels):
            members = part[labels == label]
            local[members] = len(sizes)
            sums.append(unit[members].sum(axis=0))
            sizes.append(len(members))
    merged = _merge(np.vstack(sums), np.asarray(sizes, dtype=np.float64), threshold, min_cluster_size)
    groups = _groups_after(merged, len(sizes), _choose_cut(merged, num_clusters, min_clusters, max_clusters))
    groups = _absorb_small(groups, np.vstack(sums), np.asarray(sizes), min_cluster_size)
    return groups[local]


def _local_clusters(unit: np.ndarray, threshold: float) -> np.ndarray:
    if len(unit) == 1:
        return np.zeros(1, dtype=np.int64)
    return fcluster(linkage(unit, method="centroid", metric="euclidean"), threshold, criterion="distance") - 1


class _Merges:
    """The global merge sequence: step i joined groups ``pairs[i]`` at ``distances[i]``, after
    which ``large[i]`` groups had at least ``min_cluster_size`` embeddings."""

    def __init__(self, threshold: float, large: int) -> None:
        self.threshold = threshold
        self.pairs: list[tuple[int, int]] = []
        self.distances: list[float] = []
        self.large = [large]  # before any merge, then after each


def _merge(sums: np.ndarray, sizes: np.ndarray, threshold: float, min_cluster_size: int) -> _Merges:
    """Weighted centroid linkage over the local clusters, all the way to one group (the cut is
    chosen later). Each row keeps its nearest neighbour, so a merge costs O(groups), not O(groups²)."""
    count = len(sizes)
    centroids = sums / sizes[:, None]
    weights = sizes.astype(np.float64)
    distance = cdist(centroids, centroids).astype(np.float32)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.argmin(axis=1)
    closest = distance[np.arange(count), nearest]
    merges = _Merges(threshold, int((weights >= min_cluster_size).sum()))
    for _ in range(count - 1):
        i = int(closest.argmin())
        j = int(nearest[i])
        merges.pairs.append((i, j))
        merges.distances.append(float(closest[i]))
        total = weights[i] + weights[j]
        joined = int(weights[i] >= min_cluster_size) + int(weights[j] >= min_cluster_size)
        merges.large.append(merges.large[-1] + int(total >= min_cluster_size) - joined)
        centroids[i] = (centroids[i] * weights[i] + centroids[j] * weights[j]) / total
        weights[i], weights[j] = total, 0.0
        distance[j, :] = distance[:, j] = np.inf
        closest[j] = np.inf
        row = np.linalg.norm(centroids - centroids[i], axis=1).astype(np.float32)
        row[weights == 0] = row[i] = np.inf
        distance[i, :] = distance[:, i] = row
        nearest[i], closest[i] = int(row.argmin()), row.min()
        # rows that were nearest to i or j look again; the others only compare with the new i
        stale = np.flatnonzero(((nearest == i) | (nearest == j)) & (weights > 0))
        for k in stale[stale != i]:
            nearest[k] = int(distance[k].argmin())
            closest[k] = distance[k, nearest[k]]
        better = (row < closest) & (weights > 0)
        nearest[better], closest[better] = i, row[better]
    return merges


def _groups_after(merges: _Merges, count: int, steps: int) -> np.ndarray:
    """Each local cluster's group after the first ``steps`` merges, numbered 0.."""
    parent = np.arange(count)

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return int(node)

    for i, j in merges.pairs[:steps]:
        parent[root(j)] = root(i)
    roots = np.array([root(node) for node in range(count)])
    return np.unique(roots, return_inverse=True)[1]


def _choose_cut(merges: _Merges, num_clusters: int | None, min_clusters: int, max_clusters: int | None) -> int:
    """How many merges to keep: those before the first one past the threshold, unless the number
    of large groups must be another; then the step nearest that one which gives it (or comes closest)."""
    distances = np.asarray(merges.distances)
    past = np.flatnonzero(distances > merges.threshold)
    natural = int(past[0]) if len(past) else len(distances)
    large = np.asarray(merges.large)
    target = num_clusters
    if target is None and large[natural] < min_clusters:
        target = min_clusters
    elif target is None and max_clusters is not None and large[natural] > max_clusters:
        target = max_clusters
    if target is None:
        return natural
    gap = np.abs(large - target)
    candidates = np.flatnonzero(gap == gap.min())
    return int(candidates[np.argmin(np.abs(candidates - natural))])


def _absorb_small(groups: np.ndarray, sums: np.ndarray, sizes: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Groups with fewer than ``min_cluster_size`` embeddings joined to the closest large one (cosine
    between centroids, as pyannote); numbered 0.. by first appearance of the large ones."""
    totals = np.bincount(groups, weights=sizes)
    group_sums = np.vstack([sums[groups == g].sum(axis=0) for g in range(len(totals))])
    centroids = group_sums / totals[:, None]
    large = np.flatnonzero(totals >= min_cluster_size)
    if not len(large):
        return np.zeros_like(groups)
    small = np.flatnonzero(totals < min_cluster_size)
    target = np.arange(len(totals))
    if len(small):
        target[small] = large[np.argmin(cdist(centroids[small], centroids[large], metric="cosine"), axis=1)]
    return np.unique(target[groups], return_inverse=True)[1]
