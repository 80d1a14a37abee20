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
    q = WeightAugment(translate=0.25, exact_translation=True).apply(SPEC, p)
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


def test_reference_translation_reaches_a_random_layer():
    """The reference adds ``W_{k-1}..W_0 t`` to the bias of a random layer k - 1 (k in 1..L-1), one per network."""
    torch.manual_seed(3)
    p = _params(64)
    q = WeightAugment(translate=0.25).apply(SPEC, p)
    before, after = unflatten(p, SPEC), unflatten(q, SPEC)
    moved = [(after[i]["bias"] - before[i]["bias"]).abs().amax(1) > 0 for i in range(3)]
    assert not moved[2].any()  # never the output layer
    assert torch.equal(moved[0] ^ moved[1], torch.ones(64, dtype=torch.bool))  # exactly one layer per network
    assert 16 < int(moved[1].sum()) < 48  # both layers drawn
    # the deeper shift is W1 W0 t for a t within the range: recover t from W1 W0
    deep = moved[1].nonzero().squeeze(-1)
    w10 = before[1]["weight"][deep] @ before[0]["weight"][deep]
    db = (after[1]["bias"] - before[1]["bias"])[deep]
    t = torch.linalg.lstsq(w10, db.unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(torch.bmm(w10, t.unsqueeze(-1)).squeeze(-1), db, atol=1e-5, rtol=1e-4)
    assert t.abs().max() <= 0.25 + 1e-4


def test_shift_is_the_deterministic_reference_noise():
    p = _params(4)
    q = WeightAugment(shift=0.1).apply(SPEC, p)
    for s in SPEC.slots:
        block, moved = p[:, s.start:s.end], (q - p)[:, s.start:s.end]
        if s.role == "bias" and s.numel == 1:
            assert torch.equal(moved, torch.zeros_like(moved))  # one-entry biases are left alone
        else:
            expected = 0.1 * block.std(dim=1, keepdim=True).expand_as(block)
            torch.testing.assert_close(moved, expected, atol=1e-6, rtol=1e-4)


def test_noise_and_dropout_rates():
    torch.manual_seed(2)
    p = _params(64)
    dropped = WeightAugment(dropout=0.1).apply(SPEC, p)
    frac = ((dropped == 0) & (p != 0)).float().sum() / (p != 0).float().sum()
    assert 0.08 < frac < 0.12
    kept = (dropped != 0) & (p != 0)
    torch.testing.assert_close(dropped[kept], p[kept] / 0.9)  # survivors scaled like F.dropout
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
