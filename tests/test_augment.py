"""Weight-space augmentations transform the represented function as documented."""

import math

import torch

from nnzoo.data.augment import WeightAugment
from nnzoo.data.weights import WeightBatch
from nnzoo.nets import mlp_forward, siren_init, siren_spec, unflatten

SPEC = siren_spec((2, 16, 16, 1))


def _params(n=8):
    return siren_init(n, SPEC, torch.Generator().manual_seed(0))


def test_translation_shifts_the_input():
    torch.manual_seed(0)
    p = _params()
    q = WeightAugment(translate=0.25).apply(SPEC, p)
    w1, db = unflatten(p, SPEC)[0]["weight"], unflatten(q, SPEC)[0]["bias"] - unflatten(p, SPEC)[0]["bias"]
    t = torch.linalg.lstsq(w1, db.unsqueeze(-1)).solution.squeeze(-1)  # (B, 2)
    assert t.abs().max() <= 0.25 + 1e-5 and t.abs().max() > 0.01
    x = torch.rand(40, 2) * 2 - 1
    expected = mlp_forward(p, SPEC, x.unsqueeze(0) + t.unsqueeze(1))
    torch.testing.assert_close(mlp_forward(q, SPEC, x), expected, atol=1e-4, rtol=1e-4)


def test_rotation_rotates_the_input():
    torch.manual_seed(1)
    p = _params()
    q = WeightAugment(rotate=45).apply(SPEC, p)
    w1, w1r = unflatten(p, SPEC)[0]["weight"], unflatten(q, SPEC)[0]["weight"]
    rot = torch.linalg.lstsq(w1, w1r).solution  # (B, 2, 2) with W1' = W1 R
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(2).expand(8, 2, 2), atol=1e-4, rtol=0)
    angles = torch.atan2(rot[:, 1, 0], rot[:, 0, 0]).abs()
    assert angles.max() <= math.radians(45) + 1e-4 and angles.max() > 0.01
    x = torch.rand(40, 2) * 2 - 1
    expected = mlp_forward(p, SPEC, torch.einsum("bij,kj->bki", rot, x))
    torch.testing.assert_close(mlp_forward(q, SPEC, x), expected, atol=1e-4, rtol=1e-4)


def test_noise_and_dropout_rates():
    torch.manual_seed(2)
    p = _params(64)
    dropped = WeightAugment(dropout=0.1).apply(SPEC, p)
    frac = ((dropped == 0) & (p != 0)).float().sum() / (p != 0).float().sum()
    assert 0.08 < frac < 0.12
    noisy = WeightAugment(noise=0.1).apply(SPEC, p)
    w = SPEC.slot(1, "weight")
    rel = (noisy - p)[:, w.start:w.end].std() / p[:, w.start:w.end].std()
    assert 0.08 < rel < 0.12


def test_disabled_augmentation_is_identity_and_batches_are_not_mutated():
    p = _params()
    batch = WeightBatch([SPEC], [p.clone()], torch.zeros(8, dtype=torch.long))
    assert WeightAugment()(batch) is batch
    out = WeightAugment(noise=0.1, translate=0.1)(batch)
    assert torch.equal(batch.flat, p) and not torch.equal(out.flat, p)
