"""The language path as LERF defines it, each point checked against a value computed by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lerf.config import GridConfig, LanguageConfig, ModelConfig, ProposalConfig, RelevancyConfig
from lerf.data.cameras import Cameras
from lerf.data.scale_modes import ScaleRange, TrainingCrops, training_scales
from lerf.model import SceneGeometry, build_model
from lerf.model.visibility import VisibilityGrid, visibility_grid_counts
from lerf.query.relevancy import query_samples, relevancy, share_weighted

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


def _crops(frac: float, height: int = 320, fy: float = 160.0) -> TrainingCrops:
    return TrainingCrops(torch.tensor([frac]), height, torch.tensor([fy]), 0.05, 0.5)


def test_each_sample_gets_its_own_scale():
    # A 10 % crop of a 320 px image, fy = 160 px -> crop_px / f = 0.2; samples at t = 1 and 2 on a
    # ray with z_per_t = 0.5, 2 normalised units per metre -> z = 0.25 m and 0.5 m -> 0.05 m, 0.1 m.
    t = torch.tensor([[1.0, 2.0]])
    args = (_crops(0.1), t, torch.tensor([0.5]), 2.0, 1.5)
    assert torch.allclose(training_scales("depth", *args), torch.tensor([[0.05, 0.1]]))
    # no depth: every pixel taken to be 1.5 m away -> 0.3 m
    assert torch.allclose(training_scales("no_depth", *args), torch.tensor([[0.3, 0.3]]))
    with pytest.raises(ValueError, match="scale_mode"):
        training_scales("ray_depth", *args)  # pruned (docs/pruned_scale.md)


def test_authors_scale_of_a_known_sample_at_a_known_crop():
    """kerrj/lerf: (frac - 0.05) / 0.45 x H x ||sample - ray origin|| / fy, normalised units."""
    # A 27.5 % crop sits half-way up the 5-50 % pyramid: position 0.5. H = 320, fy = 160, and the
    # sample 3 units from the camera along a ray 60 deg off-axis -> 0.5 x 320 x 3 / 160 = 3.0.
    t = torch.tensor([[3.0]])
    args = (t, torch.tensor([0.5]), 2.0)
    torch.testing.assert_close(training_scales("authors", _crops(0.275), *args), torch.tensor([[3.0]]))
    # the smallest crop trains at scale 0; the largest at twice its frustum size at that distance
    # (frustum: 0.5 x 320 / 160 x 3 units = 3.0 along the ray; authors: 1 x 2 x 3 = 6.0)
    torch.testing.assert_close(training_scales("authors", _crops(0.05), *args), torch.tensor([[0.0]]))
    torch.testing.assert_close(training_scales("authors", _crops(0.5), *args), torch.tensor([[6.0]]))
    # the distance is the sample's from the ray origin: a real ray's t_mid, checked by hand
    model = tiny_model()
    origins, dirs = torch.tensor([[0.1, 0.2, 0.9]]), torch.tensor([[0.0, 0.6, -0.8]])
    out = model(origins, dirs)
    pos, _, t_k = model.language_samples(out, 2)
    torch.testing.assert_close(t_k, (pos - origins[:, None]).norm(dim=-1))


def test_scale_modes_are_read_in_one_place():
    from lerf.data.scale_modes import head_scale, scale_unit

    assert head_scale("none", 0.7) == 0.0 and head_scale("depth", 0.7) == 0.7
    assert torch.equal(head_scale("none", torch.tensor([0.3, 0.9])), torch.zeros(2))
    assert scale_unit("authors") == "authors" and scale_unit("depth") == "m"
    # mode "none" supervises at the depth scales (recorded in the scale range); the head ignores them
    args = (_crops(0.1), torch.tensor([[1.0, 2.0]]), torch.tensor([0.5]), 2.0)
    assert torch.equal(training_scales("none", *args), training_scales("depth", *args))


def test_crop_fraction_and_scale_convert_both_ways():
    from lerf.data.units import crop_frac_for_scale, crop_px_over_f, crop_size_m, metres_per_pixel

    # 25 % of 200 px with fy = 100 px -> angular size 0.5; at 0.8 m -> 0.4 m; and back: 0.4 m at
    # 0.8 / 100 m per pixel -> 0.4 / (0.008 x 200) = 0.25
    angular = crop_px_over_f(torch.tensor(0.25), 200, torch.tensor(100.0))
    assert crop_size_m(angular, torch.tensor(0.8)).item() == pytest.approx(0.4)
    px_m = metres_per_pixel(torch.full((1, 1, 1), 0.8), torch.tensor([100.0]))
    assert crop_frac_for_scale(0.4, px_m, 200).item() == pytest.approx(0.25)


def test_a_point_contracted_both_ways():
    from lerf.data.contraction import contract, uncontract

    # (1, 1, 0): inside the L-inf unit cube, outside the L2 unit ball (norm 1.414):
    # -> (2 - 1/1.414) / 1.414 = 0.9142 per axis
    p = torch.tensor([[1.0, 1.0, 0.0], [3.0, 0.0, 4.0]])
    torch.testing.assert_close(contract(p, "linf")[0], torch.tensor([1.0, 1.0, 0.0]))
    torch.testing.assert_close(contract(p, "l2")[0], torch.tensor([0.9142136, 0.9142136, 0.0]))
    # (3, 0, 4): L-inf norm 4 -> (2 - 1/4) / 4 = 0.4375 x p; L2 norm 5 -> (2 - 1/5) / 5 = 0.36 x p
    torch.testing.assert_close(contract(p, "linf")[1], torch.tensor([1.3125, 0.0, 1.75]))
    torch.testing.assert_close(contract(p, "l2")[1], torch.tensor([1.08, 0.0, 1.44]))
    for order in ("linf", "l2"):
        torch.testing.assert_close(uncontract(contract(p, order), order), p)
    with pytest.raises(ValueError, match="contraction"):
        contract(p, "l1")


def test_language_field_contracts_with_l2_and_the_nerf_with_linf():
    pos = torch.tensor([[1.0, 1.0, 0.0]])
    model = tiny_model()  # bounded: a box, no contraction for either field
    assert torch.equal(model.language_coords(pos), model.unit_coords(pos))
    model.geometry = SceneGeometry(False, 1.0, 0.05, 10.0, 1.0, None)
    assert model.cfg.language.contraction == "l2"  # the default: the authors' LERFField
    torch.testing.assert_close(model.unit_coords(pos), torch.tensor([[0.75, 0.75, 0.5]]))
    torch.testing.assert_close(model.language_coords(pos), torch.tensor([[0.7285534, 0.7285534, 0.5]]))


def test_a_ray_with_no_language_weight_is_left_out_of_the_losses():
    """Three rays; the last has zero weight on every sample (the authors' NaN, left out by nanmean).
    Every sample's CLIP output is (1, 0), so rays 0 and 1 render (1, 0) and ray 2 renders 0.
    Targets (0, 1) for all: Huber (delta 1.25) per channel 0.5 x 1^2 -> 1.0 per ray for rays 0 and
    1, 0.5 for ray 2. The loss is the mean over rays 0 and 1, 1.0 (not (1 + 1 + 0.5) / 3)."""
    from types import SimpleNamespace

    from lerf.train.supervision import LanguageSupervision, language_losses

    model = tiny_model()
    model.language.clip = lambda bottleneck, scale: torch.tensor([[1.0, 0.0]]).expand(bottleneck.shape[0], 2)
    out = {"weights": torch.tensor([[0.5, 0.3, 0.0], [0.2, 0.6, 0.1], [0.0, 0.0, 0.0]]),
           "t_mid": torch.tensor([[0.5, 1.0, 1.5]]).expand(3, 3),
           "positions": torch.zeros(3, 3, 3)}
    pyramid = SimpleNamespace(min_frac=0.05, max_frac=0.5,
                              lookup=lambda idx, u, v, fracs: torch.tensor([[0.0, 1.0]]).expand(len(idx), 2))
    sup = LanguageSupervision(None, pyramid, None, 64, torch.tensor([64.0]))
    batch = SimpleNamespace(u=torch.zeros(3), v=torch.zeros(3), image_idx=torch.zeros(3, dtype=torch.long),
                            z_per_t=torch.ones(3))
    total, logs, _ = language_losses(model, out, batch, sup, torch.Generator().manual_seed(0))
    assert logs["loss/clip"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(model.cfg.language.clip_weight * 1.0)


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
    assert not warn_scale_range(cfg, ScaleRange(0.05, 0.6)) and not warn_scale_range(cfg, None)
    assert warn_scale_range(cfg, ScaleRange(3.0, 40.0))  # poses in centimetres, say
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


def test_version_3_checkpoints_migrate(tmp_path, caplog):
    """A run saved before checkpoint version 4: its scale range as a list, the pruned switches in
    its config, no language contraction (it trained with L-inf). It loads, migrated."""
    from lerf.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from lerf.config import TrainConfig

    model = tiny_model()
    cfg = TrainConfig()
    cfg.model = model.cfg
    save_checkpoint(tmp_path, Checkpoint(step=5, config=cfg, geometry=model.geometry, dims={"clip": 2, "dino": 0},
                                         model=model.state_dict(), scale_range=ScaleRange(0.1, 0.5)))
    (path,) = (tmp_path / "checkpoints").glob("*.pt")
    assert load_checkpoint(tmp_path).scale_range == ScaleRange(0.1, 0.5, "m")
    state = torch.load(path, weights_only=False)
    state["version"] = 3
    state["scale_range_m"] = [0.02, 0.7]
    del state["scale_range"]
    lang = state["config"]["model"]["language"]
    del lang["contraction"]
    lang["crop_sampling"], lang["scale_mode"] = "log_uniform", "ray_depth"
    torch.save(state, path)
    migrated = load_checkpoint(tmp_path)
    assert migrated.scale_range == ScaleRange(0.02, 0.7, "m")
    assert migrated.config.model.language.contraction == "linf"
    assert migrated.config.model.language.scale_mode == "depth"
    assert "crop_sampling=log_uniform was pruned" in caplog.text and "scale_mode=ray_depth" in caplog.text
    migrated.build_model(torch.device("cpu"))  # the weights still fit the model


def test_authors_scale_preset_trains_unbounded_and_records_its_unit(tmp_path):
    """experiment=authors_scale: the authors' scale mode and query range (0-1.5, 30 values); on an
    unbounded scene (the language field contracted with L2) it trains, and the checkpoint's scale
    range is in the authors' units: pyramid positions in [0, 1] times H x distance / fy."""
    from lerf.model.checkpoint import load_checkpoint
    from lerf.config import to_typed
    from lerf.train.trainer import train
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path, "experiment=authors_scale", "scene.bounded=false", "trainer.max_steps=3",
                      "trainer.eval_at_end=false")
    typed = to_typed(cfg)
    assert typed.model.language.scale_mode == "authors" and typed.model.language.contraction == "l2"
    assert (typed.relevancy.scale_min_m, typed.relevancy.scale_max_m, typed.relevancy.num_scales) == (0.0, 1.5, 30)
    train(cfg, tmp_path / "run")
    scales = load_checkpoint(tmp_path / "run").scale_range
    assert scales.unit == "authors" and 0.0 <= scales.low < scales.high


def test_max_canonical_reduce_reaches_the_cached_and_exact_queries(lang_run):
    """relevancy.canonical_reduce=max (experiment=max_canonical): the cached engine and the exact
    path agree, and the max over canonical phrases never scores below LERF's min."""
    from lerf.query.run import load_run

    loaded = load_run(lang_run, "cpu")
    cam = loaded.scene.eval_idx[0]
    lerf_min = loaded.engine(chunk=1024).query_exact("red mug", loaded.scene.cameras, cam)
    loaded.cfg.relevancy.canonical_reduce = "max"
    engine = loaded.engine(chunk=1024)
    cached = engine.query("red mug", loaded.scene.cameras, cam)
    exact = engine.query_exact("red mug", loaded.scene.cameras, cam)
    assert torch.allclose(cached.maps, exact.maps, atol=1e-5) and cached.scale_idx == exact.scale_idx
    assert (exact.maps >= lerf_min.maps - 1e-6).all() and (exact.maps > lerf_min.maps + 1e-3).any()
