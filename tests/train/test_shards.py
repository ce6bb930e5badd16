"""Shard lists, sizes, and the order each reader (process x worker) reads shards in."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.errors import UserError
from openwit.train.shards import (
    ShardList,
    Slot,
    epoch_order,
    list_shards,
    plan_readers,
    slot_share,
    worker_stream,
)


def _touch_shards(folder, names, sizes=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    if sizes is not None:
        (folder / "sizes.json").write_text(json.dumps(sizes))


def test_a_directory_lists_its_tars_in_order_with_sizes(tmp_path):
    _touch_shards(tmp_path, ["00001.tar", "00000.tar"], {"00000.tar": 3, "00001.tar": 5})
    shards = list_shards(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in shards.urls] == ["00000.tar", "00001.tar"]
    assert shards.sizes == (3, 5)
    assert shards.total_samples == 8


def test_brace_patterns_and_double_colon_lists_expand(tmp_path):
    _touch_shards(tmp_path / "a", ["00000.tar", "00001.tar"], {"00000.tar": 2})
    _touch_shards(tmp_path / "b", ["00000.tar"])
    spec = f"{tmp_path}/a/{{00000..00001}}.tar::{tmp_path}/b/00000.tar"
    shards = list_shards(spec)
    assert len(shards) == 3
    assert shards.sizes == (2, None, None)
    assert shards.total_samples is None  # unknown sizes: epochs need --train-num-samples


def test_a_pattern_naming_some_missing_shards_is_accepted(tmp_path):
    _touch_shards(tmp_path, ["00000.tar"])
    shards = list_shards(f"{tmp_path}/{{00000..00002}}.tar")
    assert len(shards) == 3  # the missing two are skipped (and counted) when read


@pytest.mark.parametrize("spec", ["{dir}/none-{{0..3}}.tar", "{dir}/empty", ""])
def test_specs_that_name_no_shard_are_user_errors(tmp_path, spec):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError):
        list_shards(spec.format(dir=tmp_path))


def test_an_unreadable_sizes_json_is_ignored(tmp_path):
    _touch_shards(tmp_path, ["00000.tar"])
    (tmp_path / "sizes.json").write_text("{not json")
    assert list_shards(str(tmp_path)).sizes == (None,)


def test_epoch_order_is_a_seeded_permutation_that_changes_per_epoch():
    first = epoch_order(50, seed=1, epoch=0)
    assert sorted(first) == list(range(50))
    assert first == epoch_order(50, seed=1, epoch=0)
    assert first != epoch_order(50, seed=1, epoch=1)
    assert first != epoch_order(50, seed=2, epoch=0)


@settings(max_examples=60, deadline=None)
@given(
    n_shards=st.integers(1, 64),
    world=st.integers(1, 4),
    workers=st.integers(1, 4),
    seed=st.integers(0, 5),
)
def test_every_shard_is_read_by_exactly_one_reader_per_epoch(n_shards, world, workers, seed):
    order = epoch_order(n_shards, seed, 0)
    shares = [
        slot_share(order, Slot(rank, world, worker, workers))
        for rank in range(world)
        for worker in range(workers)
    ]
    assert sorted(itertools.chain.from_iterable(shares)) == list(range(n_shards))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_worker_stream_moves_on_to_the_next_epoch_forever():
    shards = ShardList(tuple(f"s{i}" for i in range(4)), (10,) * 4)
    slot = Slot(0, 1, 0, 1)
    tasks = list(itertools.islice(worker_stream(shards, slot, seed=0), 12))
    assert [t.epoch for t in tasks] == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(t.url for t in tasks[4:8]) == ["s0", "s1", "s2", "s3"]


def test_worker_stream_skips_whole_shards_then_samples_within_one():
    shards = ShardList(tuple(f"s{i}" for i in range(4)), (10, 20, 30, 40))
    slot = Slot(0, 1, 0, 1)
    plain = list(itertools.islice(worker_stream(shards, slot, seed=0), 8))
    sizes = dict(zip(shards.urls, shards.sizes))
    skip = sizes[plain[0].url] + 3  # the first shard, and 3 samples of the second
    resumed = list(itertools.islice(worker_stream(shards, slot, seed=0, skip_samples=skip), 7))
    assert resumed[0].url == plain[1].url and resumed[0].skip == 3
    assert [t.url for t in resumed[1:]] == [t.url for t in plain[2:]]
    assert all(t.skip == 0 for t in resumed[1:])


def test_plan_readers_never_leaves_a_worker_without_shards():
    assert plan_readers(n_shards=16, world_size=2, workers=4, resampled=False) == (4, False)
    assert plan_readers(n_shards=6, world_size=2, workers=4, resampled=False) == (3, False)
    assert plan_readers(n_shards=1, world_size=2, workers=4, resampled=False) == (4, True)
    assert plan_readers(n_shards=3, world_size=1, workers=0, resampled=False) == (0, False)
    assert plan_readers(n_shards=1, world_size=1, workers=2, resampled=True) == (2, True)
