"""Two gloo processes at batch B train exactly like one process at batch 2B."""

# Two fresh processes import torch and open_clip: tens of seconds on two busy cores.

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.multiprocessing as mp

from openwit.train.models import create_model
from openwit.train.step import train_step
from tests.loopback import free_port
from tests.train import dist_worker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "results.pt"
    mp.spawn(dist_worker.run, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def one_process_reference():
    torch.manual_seed(0)
    model = create_model("openwit-tiny").model
    images, texts = dist_worker.batch_data(2 * dist_worker.BATCH)
    loss = train_step(model, [(images, texts)], contextlib.nullcontext, dist_worker._backward)
    return loss, dist_worker.grads(model)


def _assert_same_grads(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=2e-6, rtol=1e-4, msg=name)


def test_two_processes_give_the_loss_and_gradients_of_one_at_twice_the_batch(
    two_process_results, one_process_reference
):
    loss, grads = one_process_reference
    torch.testing.assert_close(two_process_results["loss"], loss)
    _assert_same_grads(two_process_results["grads"], grads)


def test_two_processes_with_accumulation_match_too(two_process_results, one_process_reference):
    loss, grads = one_process_reference
    torch.testing.assert_close(two_process_results["accum_loss"], loss)
    _assert_same_grads(two_process_results["accum_grads"], grads)


def test_each_rank_matches_open_clips_distributed_clip_loss(two_process_results):
    for rank in two_process_results["per_rank"]:
        torch.testing.assert_close(rank["loss_local"], rank["open_clip_loss_local"])


def test_a_dropped_pair_on_one_process_trains_like_one_process_without_it(two_process_results):
    torch.manual_seed(0)
    model = create_model("openwit-tiny").model
    images, texts = dist_worker.batch_data(2 * dist_worker.BATCH)
    valid = dist_worker.masked_rows(2 * dist_worker.BATCH)
    batch = [(images[valid], texts[valid])]
    loss = train_step(model, batch, contextlib.nullcontext, dist_worker._backward)
    torch.testing.assert_close(two_process_results["masked_loss"], loss)
    _assert_same_grads(two_process_results["masked_grads"], dist_worker.grads(model))


def test_batchnorm_running_statistics_are_kept_equal_across_processes(two_process_results):
    rank0, rank1 = two_process_results["resnet_running_mean"]
    assert rank0.abs().max() < 1  # a fresh BatchNorm's mean, not rank 1's drifted 5.0
    torch.testing.assert_close(rank1, rank0)
