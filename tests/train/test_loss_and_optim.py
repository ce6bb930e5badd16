"""The contrastive loss, gradient accumulation, CLIP's optimizer and schedule."""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from openwit.train.loss import (
    INIT_LOGIT_SCALE,
    MAX_LOGIT_SCALE,
    clamp_logit_scale,
    contrastive_loss,
)
from openwit.train.models import create_model
from openwit.train.optim import learning_rate, make_optimizer, no_decay
from openwit.train.step import train_step


def _features(n: int, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=-1)
    return images, texts


def test_loss_equals_open_clip_clip_loss_on_the_same_features():
    from open_clip.loss import ClipLoss

    images, texts = _features(12)
    scale = torch.tensor(math.exp(INIT_LOGIT_SCALE))
    ours = contrastive_loss(images, texts, scale)
    theirs = ClipLoss()(images, texts, scale)
    torch.testing.assert_close(ours, theirs)


def test_loss_is_low_when_pairs_match_and_ln_n_when_features_carry_nothing():
    images, _ = _features(8)
    assert contrastive_loss(images, images, torch.tensor(100.0)) < 0.01
    flat = torch.ones(8, 4) / 2
    uniform = contrastive_loss(flat, flat, torch.tensor(10.0))
    torch.testing.assert_close(uniform, torch.tensor(math.log(8)))


def test_the_logit_scale_starts_at_one_over_0_07_and_is_clamped_at_100():
    model = create_model("openwit-tiny").model
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    with torch.no_grad():
        model.logit_scale.fill_(9.0)
    clamp_logit_scale(model)
    assert model.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)
    assert math.exp(model.logit_scale.item()) == pytest.approx(100.0)


def _backward(loss: torch.Tensor) -> None:
    loss.backward()


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_accumulation_gives_the_gradients_of_the_whole_batch():
    torch.manual_seed(0)
    model = create_model("openwit-tiny").model
    images = torch.randn(8, 3, 32, 32)
    texts = torch.randint(1, 49000, (8, 32))
    whole = train_step(model, [(images, texts)], contextlib.nullcontext, _backward)
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    halves = [(images[:4], texts[:4]), (images[4:], texts[4:])]
    accumulated = train_step(model, halves, contextlib.nullcontext, _backward)
    torch.testing.assert_close(accumulated, whole)
    got = _grads(model)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_a_masked_pair_leaves_the_loss_as_if_it_had_never_been_in_the_batch():
    images, texts = _features(6)
    images.requires_grad_(True)
    scale = torch.tensor(math.exp(INIT_LOGIT_SCALE))
    valid = torch.tensor([True, True, False, True, True, True])
    masked = contrastive_loss(images, texts, scale, valid)
    reference = contrastive_loss(images[valid], texts[valid], scale)
    torch.testing.assert_close(masked, reference)
    (grad,) = torch.autograd.grad(masked, images)
    (expected,) = torch.autograd.grad(reference, images)
    torch.testing.assert_close(grad, expected)  # a dropped row: no gradient either
    assert grad[2].abs().sum() == 0
    all_valid = contrastive_loss(images, texts, scale, torch.ones(6, dtype=torch.bool))
    torch.testing.assert_close(all_valid, contrastive_loss(images, texts, scale))


def test_masks_carry_through_gradient_accumulation():
    torch.manual_seed(0)
    model = create_model("openwit-tiny").model
    images = torch.randn(8, 3, 32, 32)
    texts = torch.randint(1, 49000, (8, 32))
    valid = torch.tensor([True] * 5 + [False] + [True] * 2)
    kept = train_step(model, [(images[valid], texts[valid])], contextlib.nullcontext, _backward)
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    halves = [(images[:4], texts[:4], valid[:4]), (images[4:], texts[4:], valid[4:])]
    accumulated = train_step(model, halves, contextlib.nullcontext, _backward)
    torch.testing.assert_close(accumulated, kept)
    got = _grads(model)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_weight_decay_spares_gains_biases_and_the_logit_scale():
    model = create_model("openwit-tiny").model
    optimizer = make_optimizer(model, 1e-3, 0.2, (0.9, 0.98), 1e-6, torch.device("cpu"))
    plain, decayed = optimizer.param_groups
    assert plain["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.2
    assert plain["betas"] == (0.9, 0.98) and plain["eps"] == 1e-6
    names = {id(p): n for n, p in model.named_parameters()}
    plain_names = {names[id(p)] for p in plain["params"]}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert "logit_scale" in plain_names
    assert any(n.endswith("ln_final.weight") for n in plain_names)
    assert any(n.endswith("bias") for n in plain_names)
    assert "text_projection" in decayed_names and "token_embedding.weight" in decayed_names
    assert not any(no_decay(n, p) for n, p in model.named_parameters() if n in decayed_names)
    assert len(plain_names) + len(decayed_names) == len(list(model.parameters()))


def test_schedule_warms_up_linearly_then_decays_to_zero_by_cosine():
    lrs = [learning_rate(step, 1.0, warmup=10, total=110) for step in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5)
    assert lrs[-1] < 0.001
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))


@given(step=st.integers(0, 10_000), warmup=st.integers(0, 500), total=st.integers(1, 10_000))
def test_the_learning_rate_stays_between_zero_and_the_peak(step, warmup, total):
    assert 0.0 <= learning_rate(step, 3e-4, warmup, total) <= 3e-4 + 1e-12
