"""The language path as LERF defines it, each point checked against a value computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lerf.config import GridConfig, LanguageConfig, ModelConfig, ProposalConfig, RelevancyConfig
from lerf.data.cameras import Cameras
from lerf.model import SceneGeometry, build_model
from lerf.query.relevancy import query_samples, relevancy, share_weighted
from lerf.query.visibility import VisibilityGrid, visibility_grid_counts
from lerf.train.supervision import training_scales

SMALL = GridConfig(num_levels=2, features_per_level=2, log2_hashmap_size=8, base_resolution=4, max_resolution=8)


def tiny_model(**language):
    cfg = ModelConfig(grid=SMALL, hidden_dim=8, color_hidden_dim=8, sh_degree=1,
                      proposals=[ProposalConfig(grid=SMALL, hidden_dim=8)], proposal_samples=[8], nerf_samples=4,
                      language=LanguageConfig(grids=[SMALL], bottleneck_dim=4, hidden_dim=8, clip_layers=1,
                                              dino_enabled=False, samples_per_ray=2, **language))
    geometry = SceneGeometry(True, 1.0, 0.05, 10.0, 1.0, None)
    return build_model(cfg, geometry, torch.device("cpu"), clip_dim=2)[0]


def test_two_sample_ray_is_normalised_per_sample():
    outputs = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # raw CLIP outputs of the ray's two samples
    w = torch.tensor([[0.5, 0.5]])
    for normalize, expected in ((True, (math.sqrt(0.5), math.sqrt(0.5))),
                                (False, (1.5 / math.sqrt(2.5), 0.5 / math.sqrt(2.5)))):
        model = tiny_model(normalize_samples=normalize)
        model.language.clip = lambda bottleneck, scale: outputs  # the field's output, fixed
        ray = model.composite_clip(torch.zeros(2, 4), w, torch.ones(1, 2))
        assert torch.allclose(ray, torch.tensor([expected]), atol=1e-6), normalize


def test_each_sample_gets_its_own_scale():
    # 32 px crop, f = 160 px -> crop_px / f = 0.2; samples at t = 1 and 2 on a ray with
    # z_per_t = 0.5, 2 normalised units per metre -> z = 0.25 m and 0.5 m -> 0.05 m and 0.1 m.
    t = torch.tensor([[1.0, 2.0]])
    args = (torch.tensor([0.2]), t, torch.tensor([4.0]), torch.tensor([0.5]), 2.0, 1.5)
    assert torch.allclose(training_scales("depth", *args), torch.tensor([[0.05, 0.1]]))
    # one scale per ray from the expected depth t = 4 -> z = 1 m -> 0.2 m for both samples
    assert torch.allclose(training_scales("ray_depth", *args), torch.tensor([[0.2, 0.2]]))
    # no depth: every pixel taken to be 1.5 m away -> 0.3 m
    assert torch.allclose(training_scales("no_depth", *args), torch.tensor([[0.3, 0.3]]))
    assert torch.equal(training_scales("none", *args), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="scale_mode"):
        training_scales("metres", *args)


class FlatWall(nn.Module):
    """A fake model whose every ray hits a surface at camera depth `depth` (bounded, 1 unit/m)."""

    def __init__(self, depth: float):
        super().__init__()
        self.depth = depth
        self.anchor = nn.Parameter(torch.zeros(1))
        self.geometry = SceneGeometry(True, 1.0, 0.05, 10.0, 1.0, None)

    def forward(self, origins, dirs, jitter=False):
        r = origins.shape[0]
        z_per_t = -dirs[:, 2]  # cameras look down -z with identity rotation
        return {"rgb": torch.zeros(r, 3), "accumulation": torch.ones(r), "depth": self.depth / z_per_t}


def _looking_down(x: float) -> Cameras:
    c2w = torch.eye(4)[:3].clone()
    c2w[:, 3] = torch.tensor([x, 0.0, 0.9])
    f = torch.tensor([16.0])
    return c2w, f


def test_region_seen_by_a_single_view_is_filtered_out():
    # Three cameras at z = 0.9 looking down at a wall 1.4 below (z = -0.5): two at x = -0.5, one
    # at x = +0.5; each sees a 0.7-unit-wide patch of the wall (f = 16 px, 8 px wide images).
    c2w, f = zip(*[_looking_down(x) for x in (-0.5, -0.5, 0.5)])
    cams = Cameras(torch.stack(c2w), *(torch.cat(f),) * 2, torch.full((3,), 4.0), torch.full((3,), 4.0), 8, 8,
                   torch.zeros(3, 4))
    counts = visibility_grid_counts(FlatWall(1.4), cams, [0, 1, 2], resolution=32, max_px=8)
    grid = VisibilityGrid(counts, min_views=2)
    # unit-cube points on the wall (z = -0.5 -> 0.25) under each camera, and 0.4 behind the wall
    left, right, behind = torch.tensor([[0.25, 0.5, 0.27]]), torch.tensor([[0.75, 0.5, 0.27]]), \
        torch.tensor([[0.25, 0.5, 0.05]])
    assert grid.visible(left).item() and not grid.visible(right).item() and not grid.visible(behind).item()
    assert counts.max() == 2


def test_invisible_samples_add_no_relevancy():
    model = tiny_model()
    origins, dirs = torch.zeros(3, 3), torch.tensor([[0.0, 0.0, -1.0]] * 3)
    out = model(origins, dirs)
    _, w, share = query_samples(model, out, visible=lambda x: torch.zeros(x.shape[0], dtype=torch.bool))
    assert torch.equal(w, torch.zeros_like(w)) and torch.equal(share, torch.zeros_like(share))
    canon = nn.functional.normalize(torch.randn(4, 2), dim=-1)
    assert relevancy(torch.zeros(3, 2), canon[0], canon, 10.0).eq(0).all()


def test_schema_default_is_the_seed_grid_and_the_nerfacto_preset():
    from hydra import compose, initialize_config_dir

    from lerf.config import register_configs, to_typed
    from tests.helpers import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = to_typed(compose("train", overrides=["scene=teacup"]))
    assert cfg.model == ModelConfig()  # `TrainConfig()` and `python train.py scene=...` build one model
    (grid,) = cfg.model.language.grids
    assert (grid.num_levels, grid.features_per_level, grid.log2_hashmap_size) == (32, 8, 21)
    assert (grid.base_resolution, grid.max_resolution) == (16, 512)


def test_query_warns_when_searched_scales_miss_the_trained_ones(caplog):
    from lerf.query.run import warn_scale_range

    cfg = RelevancyConfig()
    assert not warn_scale_range(cfg, [0.05, 0.6]) and not warn_scale_range(cfg, None)
    assert warn_scale_range(cfg, [3.0, 40.0])  # poses in centimetres, say
    assert "metres_per_unit" in caplog.text


def test_metres_per_unit_scales_the_geometry():
    from lerf.config import SceneConfig

    geo = SceneGeometry.from_scene(SceneConfig(metres_per_unit=0.01), 0.5, None)  # poses in cm
    assert geo.scale_factor == pytest.approx(50.0)  # normalised units per metre
    with pytest.raises(ValueError, match="metres_per_unit"):
        SceneGeometry.from_scene(SceneConfig(metres_per_unit=0.0), 0.5, None)


def test_visible_share_scales_relevancy_by_the_kept_weight():
    """Hand example: a ray's top samples weigh 0.6 and 0.2; the filter drops the 0.6 one, so the
    ray keeps a quarter of its weight and its relevancy is a quarter of its seen remainder's."""
    model = tiny_model()
    model.cfg.language.samples_per_ray = 2
    out = {"weights": torch.tensor([[0.6, 0.2, 0.0]]), "t_mid": torch.tensor([[1.0, 2.0, 3.0]]),
           "positions": torch.tensor([[[0.0, 0.0, 0.1], [0.0, 0.0, 0.3], [0.0, 0.0, 0.5]]])}
    drop_first = lambda x: model.unit_coords(torch.tensor([[0.0, 0.0, 0.1]])).ne(x).any(-1)  # noqa: E731
    _, w, share = query_samples(model, out, drop_first)
    torch.testing.assert_close(w, torch.tensor([[0.0, 0.2]]))
    torch.testing.assert_close(share, torch.tensor([0.25]))
    _, w_all, share_all = query_samples(model, out)
    torch.testing.assert_close(share_all, torch.tensor([1.0]))
    cfg = RelevancyConfig()
    rel = torch.tensor([[0.8]])
    torch.testing.assert_close(share_weighted(rel, share, cfg), torch.tensor([[0.2]]))
    cfg.visible_share = False  # LERF's plain relevancy of the normalised seen remainder
    torch.testing.assert_close(share_weighted(rel, share, cfg), rel)
