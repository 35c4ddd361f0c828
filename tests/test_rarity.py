"""Rarity sampling of training rays (lerf/train/rarity.py) and the ray sampler's uniform path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lerf.encoders.pyramid import ClipPyramid, pyramid_grids
from lerf.train.rarity import RaritySampler, spherical_kmeans


def test_spherical_kmeans_recovers_planted_directions():
    g = torch.Generator().manual_seed(0)
    axes = torch.eye(8)[:3]
    sizes = [500, 60, 12]
    x = torch.cat([axes[i] + 0.05 * torch.randn(n, 8, generator=g) for i, n in enumerate(sizes)])
    labels = spherical_kmeans(x, 3, 20, torch.Generator().manual_seed(1))
    truth = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    for i in range(3):  # each planted group is one cluster and no other group shares it
        mine = labels[truth == i]
        assert (mine == mine[0]).all()
        assert not (labels[truth != i] == mine[0]).any()


def one_level_pyramid(codes: torch.Tensor, h: int = 40, w: int = 40) -> ClipPyramid:
    """A single-level pyramid of 4-px tiles (10 x 10 per 40-px image) holding `codes` (n_img, 10, 10, d)."""
    levels = tuple(pyramid_grids(h, w, [0.1], stride_scaler=1.0))  # tiles side by side
    assert levels[0].crop_px == 4 and len(levels[0].tops) == 10
    n = codes.shape[0]
    return ClipPyramid(codes.reshape(-1, codes.shape[-1]).numpy().astype(np.float16), levels, n, (h, w))


def test_rarity_sampler_spreads_rays_evenly_over_appearances():
    # Four images of background (direction 0); one tile of image 2 is "rare" (direction 1).
    codes = torch.zeros(4, 10, 10, 4)
    codes[..., 0] = 1.0
    codes[2, 7, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    train_idx = [0, 2, 3]  # image 1 is held out: never drawn
    sampler = RaritySampler(one_level_pyramid(codes), train_idx, clusters=2, seed=0)
    assert sorted(sampler.cluster_sizes().tolist()) == [1, 299]
    img, row, col = sampler.sample(20_000, torch.Generator().manual_seed(0))
    assert set(img.unique().tolist()) <= set(train_idx)
    on_rare = (img == 2) & (row // 4 == 7) & (col // 4 == 3)
    # Half the rays go to the one-tile cluster (1 tile of 300 under uniform sampling) ...
    assert on_rare.float().mean().item() == pytest.approx(0.5, abs=0.02)
    # ... and they fall inside that tile's pixels, all 16 of them.
    assert len(set(zip(row[on_rare].tolist(), col[on_rare].tolist()))) == 16


def test_relative_density_of_a_rare_tile_and_of_the_rest():
    # As above: 3 training images of 10 x 10 tiles (4 px), one rare tile in image 2, two clusters.
    codes = torch.zeros(4, 10, 10, 4)
    codes[..., 0] = 1.0
    codes[2, 7, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    sampler = RaritySampler(one_level_pyramid(codes), [0, 2, 3], clusters=2, seed=0)
    assert sampler.tile_probabilities().sum().item() == pytest.approx(1.0)
    rel = sampler.relative_density(40, 40)  # train_idx order: image 2 is row 1
    assert rel.shape == (3, 40, 40)
    # uniform: 1 / (3 x 1600) per pixel; the rare tile: 1/2 over its 16 pixels -> 150x uniform;
    # every other tile: 1 / (2 x 299) over 16 pixels -> 4800 / 9568 of uniform.
    assert torch.allclose(rel[1, 28:32, 12:16], torch.tensor(150.0))
    assert rel[0, 0, 0].item() == pytest.approx(4800 / 9568, rel=1e-5)
    assert rel[1, 0, 0].item() == pytest.approx(4800 / 9568, rel=1e-5)
    assert rel.mean().item() == pytest.approx(1.0, rel=1e-5)


def test_rgb_importance_weights_undo_the_rarity_emphasis(tmp_path):
    """Each ray's RGB weight is uniform / mixture probability of its pixel, so that the weights
    average to 1 under the sampler (the photometric loss is unbiased for uniform rays)."""
    from omegaconf import OmegaConf

    from lerf.data.scene import load_scene
    from lerf.train.losses import rgb_loss
    from lerf.train.rays import RaySampler
    from tests.helpers import tiny_config

    scene = load_scene(OmegaConf.to_object(tiny_config(tmp_path)).scene)
    h, w, n = scene.height, scene.width, len(scene.frame_names)
    levels = tuple(pyramid_grids(h, w, [0.1]))
    g = torch.Generator().manual_seed(5)
    feats = F.normalize(torch.randn(n * levels[0].cells_per_image, 4, generator=g), dim=-1)
    feats[: levels[0].cells_per_image // 8] = F.normalize(torch.tensor([0.0, 0.0, 0.0, 1.0]), dim=-1)
    rarity = RaritySampler(ClipPyramid(feats.numpy().astype(np.float16), levels, n, (h, w)), scene.train_idx, 4, 0)
    plain = RaySampler(scene, torch.device("cpu"), rarity, 0.5)
    assert plain.sample(8, g).ray_weight is None  # unbiased_nerf off: every ray counts once
    sampler = RaySampler(scene, torch.device("cpu"), rarity, 0.5, unbiased_nerf=True)
    batch = sampler.sample(256, torch.Generator().manual_seed(0))
    rel = rarity.relative_density(h, w)
    pos = {int(v): i for i, v in enumerate(scene.train_idx)}
    row, col = (batch.v - 0.5).long(), (batch.u - 0.5).long()
    expected = torch.stack([1.0 / (0.5 + 0.5 * rel[pos[int(i)], r, c]) for i, r, c in zip(batch.image_idx, row, col)])
    torch.testing.assert_close(batch.ray_weight, expected)
    assert batch.ray_weight.std() > 0.1  # the rarity clusters are uneven: weights differ
    draws = torch.cat([sampler.sample(2048, g).ray_weight for _ in range(40)])
    assert draws.mean().item() == pytest.approx(1.0, abs=0.03)
    # The loss weights each ray's squared error; with all weights 1 it is the plain MSE.
    pred, target = torch.rand(256, 3, generator=g), torch.rand(256, 3, generator=g)
    assert rgb_loss(pred, target, torch.ones(256)).item() == pytest.approx(rgb_loss(pred, target).item())
    weighted = (batch.ray_weight[:, None] * (pred - target) ** 2).mean()
    assert rgb_loss(pred, target, batch.ray_weight).item() == pytest.approx(weighted.item())


def test_ray_sampler_mixes_uniform_and_rarity_rays(tmp_path):
    from lerf.data.scene import load_scene
    from lerf.train.rays import RaySampler
    from tests.helpers import tiny_config

    from omegaconf import OmegaConf

    scene = load_scene(OmegaConf.to_object(tiny_config(tmp_path)).scene)
    train, h, w = torch.tensor(scene.train_idx), scene.height, scene.width
    g = torch.Generator().manual_seed(3)
    img, row, col = RaySampler(scene, torch.device("cpu")).pixels(64, g)
    # The uniform path draws exactly as before rarity sampling existed: image, row, column.
    g = torch.Generator().manual_seed(3)
    assert torch.equal(img, train[torch.randint(len(train), (64,), generator=g)])
    assert torch.equal(row, torch.randint(h, (64,), generator=g))
    assert torch.equal(col, torch.randint(w, (64,), generator=g))
    levels = tuple(pyramid_grids(h, w, [0.1]))
    n = len(scene.frame_names)
    feats = F.normalize(torch.randn(n * levels[0].cells_per_image, 4, generator=g), dim=-1)
    rarity = RaritySampler(ClipPyramid(feats.numpy().astype(np.float16), levels, n, (h, w)), scene.train_idx, 4, 0)
    img, row, col = RaySampler(scene, torch.device("cpu"), rarity, 0.25).pixels(64, torch.Generator().manual_seed(3))
    assert len(img) == 64 and set(img.tolist()) <= set(scene.train_idx)
    assert (row >= 0).all() and (row < h).all() and (col >= 0).all() and (col < w).all()


@pytest.mark.parametrize("override, message", [
    ("trainer.ray_sampling=often", "trainer.ray_sampling must be uniform or rarity, got 'often'"),
    ("trainer.rarity_share=1.5", r"trainer.rarity_share must lie in \[0, 1\], got 1.5")])
def test_bad_ray_sampling_settings_are_named(tmp_path, override, message):
    from omegaconf import OmegaConf

    from tests.helpers import tiny_config

    with pytest.raises(ValueError, match=message):  # train.py prints it as one line (lerf.apps.cli)
        OmegaConf.to_object(tiny_config(tmp_path, override))


def test_language_losses_read_an_evenly_spread_subset_of_the_batch(tmp_path):
    """model.language.rays_per_batch=m: the language losses are those of the m rays
    spread_indices picks (rarity and uniform rays in proportion), the NeRF's of all rays."""
    import dataclasses

    from omegaconf import OmegaConf

    from lerf.config import to_typed
    from lerf.train.rays import RaySampler, spread_indices
    from lerf.train.supervision import language_losses
    from lerf.train.trainer import setup
    from tests.helpers import tiny_config

    assert spread_indices(8, 4).tolist() == [0, 2, 5, 7]
    assert spread_indices(5, 0).tolist() == spread_indices(5, 9).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"model.language.rays_per_batch must be >= 0 \(0 = every ray\), got -1"):
        OmegaConf.to_object(tiny_config(tmp_path, "model.language.rays_per_batch=-1"))
    run = setup(to_typed(tiny_config(tmp_path, "model.language.rays_per_batch=24")), tmp_path / "run")
    model = run.model
    batch = RaySampler(run.scene, torch.device("cpu")).sample(64, torch.Generator().manual_seed(0))
    out = model(batch.origins, batch.dirs, step=0, jitter=False)
    subset_loss, subset_logs, _ = language_losses(model, out, batch, run.supervision, torch.Generator().manual_seed(1))
    idx = spread_indices(64, 24)
    model.cfg.language = dataclasses.replace(model.cfg.language, rays_per_batch=0)
    picked = {key: value[idx] for key, value in out.items() if key in ("weights", "positions", "t_mid", "depth")}
    full_loss, full_logs, _ = language_losses(model, picked, batch.subset(idx), run.supervision,
                                           torch.Generator().manual_seed(1))
    assert subset_loss.item() == pytest.approx(full_loss.item(), rel=1e-6)
    assert subset_logs["loss/clip"] == pytest.approx(full_logs["loss/clip"], rel=1e-6)
    everything, _, _ = language_losses(model, out, batch, run.supervision, torch.Generator().manual_seed(1))
    assert everything.item() != pytest.approx(subset_loss.item(), rel=1e-3)  # 64 rays are not 24
