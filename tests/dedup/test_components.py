"""Connected components by large-star/small-star against a brute-force reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.dedup.batches import partition_of
from openwit.dedup.components import large_star, small_star, star_components, unique_edges


def reference(edges: list[tuple[int, int]]) -> dict[int, int]:
    """Node -> smallest node of its component, by breadth-first search."""
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    root: dict[int, int] = {}
    for start in sorted(neighbours):
        if start in root:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for node in frontier for n in neighbours[node] if n not in seen]
            seen.update(frontier)
        for node in seen:
            root[node] = min(seen)
    return root


def partitioned(edges: list[tuple[int, int]], partitions: int) -> tuple[dict[int, int], int]:
    """The rounds as the stage runs them: every step sees one partition of the nodes with
    all their edges (large-star: both ends; small-star: the larger end)."""
    a = np.asarray([e[0] for e in edges], np.int64)
    b = np.asarray([e[1] for e in edges], np.int64)
    larger, smaller = np.maximum(a, b), np.minimum(a, b)
    rounds = 0
    while True:
        rounds += 1
        node, neighbour = np.r_[larger, smaller], np.r_[smaller, larger]
        where = partition_of(node, partitions)
        out, changed = [], 0
        for p in range(partitions):
            *edges_p, c = large_star(node[where == p], neighbour[where == p])
            out.append(edges_p)
            changed += c
        larger = np.concatenate([o[0] for o in out])
        smaller = np.concatenate([o[1] for o in out])
        where = partition_of(larger, partitions)
        out = []
        for p in range(partitions):
            *edges_p, c = small_star(larger[where == p], smaller[where == p])
            out.append(edges_p)
            changed += c
        larger = np.concatenate([o[0] for o in out])
        smaller = np.concatenate([o[1] for o in out])
        if changed == 0:
            break
    roots = {int(s): int(s) for s in smaller}
    return {**roots, **dict(zip(larger.tolist(), smaller.tolist()))}, rounds


def relabel(edges: list[tuple[int, int]], seed: int) -> list[tuple[int, int]]:
    """The same graph with node ids shuffled (the order of ids matters to the rounds)."""
    nodes = sorted({n for e in edges for n in e})
    ids = np.random.default_rng(seed).permutation(10 * len(nodes) + 1)[: len(nodes)]
    new = dict(zip(nodes, ids.tolist()))
    return [(new[a], new[b]) for a, b in edges]


def chain(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n - 1)]


def star(n: int) -> list[tuple[int, int]]:
    return [(0, i) for i in range(1, n)]


graphs = st.one_of(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), min_size=1, max_size=120),
    st.builds(chain, st.integers(2, 300)),
    st.builds(star, st.integers(2, 100)),
)


@settings(max_examples=150, deadline=None)
@given(graphs, st.integers(0, 2**16), st.integers(1, 7))
def test_star_rounds_find_the_components_of_any_graph(edges, seed, partitions):
    edges = relabel(edges, seed)
    want = reference(edges)
    got, _ = star_components(*map(np.asarray, zip(*edges)))
    assert {n: got.get(n, n) for n in want} == want  # a node with only a loop: alone
    by_partitions, _ = partitioned(edges, partitions)
    assert {n: by_partitions.get(n, n) for n in want} == want


def test_a_path_longer_than_any_fixed_round_count_still_converges():
    for edges in (chain(5000), relabel(chain(5000), 1)):
        got, rounds = partitioned(edges, 4)
        assert got == reference(edges)
        assert rounds > 4  # more than the stage unrolls at first: it runs the pass again


def test_converged_components_are_stars_around_their_smallest_node():
    edges = relabel([*chain(50), (100, 101), (101, 102)], 3)
    got, _ = star_components(*map(np.asarray, zip(*edges)))
    roots = set(got.values())
    assert all(got[r] == r for r in roots)
    assert len(roots) == 2


def test_unique_edges_drops_loops_and_repeats_for_small_and_large_ids():
    for big in (0, 2**40):
        a = np.asarray([3, 3, 1, 2, 2]) + big
        b = np.asarray([1, 1, 1, 5, 4]) + big
        got = list(zip(*(x.tolist() for x in unique_edges(a, b))))
        assert got == [(2 + big, 4 + big), (2 + big, 5 + big), (3 + big, 1 + big)]
