from __future__ import annotations

import torch

from trainers.augment import augment_batch


def test_augmentation_is_seeded_shape_preserving_and_off_at_strength_zero():
    x = torch.randn(8, 1, 32, 32)
    a = augment_batch(x, strength=1.0, generator=torch.Generator().manual_seed(0))
    b = augment_batch(x, strength=1.0, generator=torch.Generator().manual_seed(0))
    c = augment_batch(x, strength=1.0, generator=torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert augment_batch(x, strength=0.0) is x


def test_a_flip_alone_mirrors_the_image():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = augment_batch(x, strength=1e-6, hflip=True, generator=torch.Generator().manual_seed(0))
    flipped = torch.isclose(out, x.flip(-1), atol=1e-3).flatten(1).all(1)
    same = torch.isclose(out, x, atol=1e-3).flatten(1).all(1)
    assert (flipped | same).all() and flipped.any() and same.any()
