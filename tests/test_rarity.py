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


@pytest.mark.parametrize("override, message", [("trainer.ray_sampling=often", "ray_sampling"),
                                               ("trainer.rarity_share=1.5", "rarity_share")])
def test_bad_ray_sampling_settings_are_named(tmp_path, override, message):
    from omegaconf import OmegaConf

    from tests.helpers import tiny_config

    with pytest.raises(Exception, match=message):
        OmegaConf.to_object(tiny_config(tmp_path, override))
