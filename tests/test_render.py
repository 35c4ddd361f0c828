import math

import pytest
import torch

from lerf.render.sampling import intersect_box, sample_pdf, spacing_to_t, uniform_bins
from lerf.render.volume import add_background, composite, expected_depth, render_weights
from lerf.train.losses import distortion_loss, interlevel_loss, outer_weights


def test_render_weights_worked_example():
    density = torch.ones(1, 3)
    deltas = torch.full((1, 3), math.log(2.0))
    w = render_weights(density, deltas)
    assert torch.allclose(w, torch.tensor([[0.5, 0.25, 0.125]]))


def test_composite_depth_background():
    w = torch.tensor([[0.5, 0.25]])
    vals = torch.tensor([[[1.0], [3.0]]])
    assert torch.allclose(composite(w, vals), torch.tensor([[1.25]]))
    assert torch.allclose(expected_depth(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 3.0]])), torch.tensor([2.0]))
    # a ray with no weight gets its last sample distance, not NaN
    assert torch.allclose(expected_depth(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]])), torch.tensor([3.0]))
    out = add_background(torch.full((1, 3), 0.2), torch.tensor([0.5]), torch.ones(1, 3))
    assert torch.allclose(out, torch.full((1, 3), 0.7))


def test_intersect_box():
    near, far = intersect_box(torch.tensor([[0.0, 0, -3], [5.0, 5, 5]]), torch.tensor([[0.0, 0, 1], [0.0, 0, 1]]), 1.0)
    assert torch.allclose(near[0], torch.tensor(2.0)) and torch.allclose(far[0], torch.tensor(4.0))
    assert far[1] == near[1]  # miss -> empty interval


def test_spacing_maps_ends_to_near_far():
    near, far = torch.tensor([0.05]), torch.tensor([1000.0])
    s = torch.tensor([[0.0, 1.0]])
    for kind in ("linear", "piecewise"):
        t = spacing_to_t(s, near, far, kind)
        assert torch.allclose(t, torch.tensor([[0.05, 1000.0]]), rtol=1e-3)
    assert torch.allclose(spacing_to_t(torch.tensor([[0.25]]), torch.tensor([2.0]), torch.tensor([4.0]), "linear"),
                          torch.tensor([[2.5]]))


def test_sample_pdf_concentrates_on_weight():
    bins = torch.tensor([[0.0, 0.5, 1.0]])
    w = torch.tensor([[0.0, 1.0]])
    edges = sample_pdf(bins, w, 2, jitter=False, padding=0.0)
    assert torch.allclose(edges, torch.tensor([[0.5, 0.75, 1.0]]), atol=1e-5)
    jittered = sample_pdf(bins.expand(64, -1), w.expand(64, -1), 8, jitter=True, padding=0.0)
    assert (jittered >= 0.5 - 1e-6).all() and (jittered[:, 1:] >= jittered[:, :-1]).all()


def test_uniform_bins_sorted_and_span():
    b = uniform_bins(16, 8, jitter=True, device=torch.device("cpu"))
    assert b.shape == (16, 9)
    assert (b[:, 1:] >= b[:, :-1]).all() and (b[:, 0] == 0).all() and (b[:, -1] == 1).all()


def test_outer_weights_and_interlevel():
    prop_edges = torch.tensor([[0.0, 0.5, 1.0]])
    prop_w = torch.tensor([[0.2, 0.8]])
    edges = torch.tensor([[0.4, 0.6, 1.0]])
    assert torch.allclose(outer_weights(edges, prop_edges, prop_w), torch.tensor([[1.0, 0.8]]))
    # proposal covers the NeRF weights -> no loss; under-covering -> positive loss with grad to proposal
    assert interlevel_loss(edges, torch.tensor([[0.5, 0.5]]), prop_edges, prop_w) < 1e-6
    p = torch.tensor([[0.2, 0.3]], requires_grad=True)
    loss = interlevel_loss(edges, torch.tensor([[0.5, 0.5]]), prop_edges, p)
    # nerfstudio averages over rays and samples: the one uncovered bin's cost / 2 samples
    assert torch.allclose(loss, torch.tensor((0.5 - 0.3) ** 2 / 0.5 / 2), atol=1e-5)
    loss.backward()
    assert p.grad is not None and p.grad.abs().sum() > 0


def test_distortion_worked_examples():
    one = distortion_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0]]))
    two = distortion_loss(torch.tensor([[0.0, 0.5, 1.0]]), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(one, torch.tensor(1 / 3)) and torch.allclose(two, torch.tensor(1 / 3))
    # matches the O(n^2) definition on random input
    edges = torch.sort(torch.rand(3, 7), -1).values
    w = torch.rand(3, 6)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    direct = (w[:, :, None] * w[:, None, :] * (mids[:, :, None] - mids[:, None, :]).abs()).sum((1, 2)) \
        + (w ** 2 * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3
    assert torch.allclose(distortion_loss(edges, w), direct.mean(), atol=1e-6)


def test_ray_weights_scale_each_rays_share_of_the_nerf_losses():
    """Importance weights (rarity batches): weight 1 everywhere is the plain loss, and a ray of
    weight w counts w times; a ray of weight 0 not at all."""
    g = torch.Generator().manual_seed(0)
    edges = torch.sort(torch.rand(4, 6, generator=g), dim=-1).values
    weights = torch.rand(4, 5, generator=g) / 5
    prop_edges = torch.sort(torch.rand(4, 4, generator=g), dim=-1).values
    prop_weights = torch.rand(4, 3, generator=g) / 3
    ones, w = torch.ones(4), torch.tensor([0.0, 2.0, 1.0, 0.5])
    for loss in (lambda rw: interlevel_loss(edges, weights, prop_edges, prop_weights, ray_weight=rw),
                 lambda rw: distortion_loss(edges, weights, rw)):
        assert loss(ones).item() == pytest.approx(loss(None).item())
        per_ray = torch.stack([loss(torch.eye(4)[i] * 4) for i in range(4)])  # each ray's own value
        assert per_ray.mean().item() == pytest.approx(loss(None).item(), rel=1e-5)
        assert loss(w).item() == pytest.approx((w * per_ray).mean().item(), rel=1e-5)
        assert per_ray.min() >= 0 and loss(w).item() != pytest.approx(loss(None).item())
