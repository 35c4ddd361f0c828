"""CLIP pyramid and DINO map geometry and interpolation (lerf/encoders/pyramid.py, interp.py)."""
import numpy as np
import pytest
import torch

from lerf.demo.reference import ReferenceDinoEncoder
from lerf.encoders.interp import axis_lerp, uniform_axis_lerp
from lerf.encoders.pyramid import (ClipPyramid, DinoMaps, LevelGrid, PyramidInputs, build_clip_pyramid,
                                   build_dino_maps, crop_positions, level_grid, linspace_fracs,
                                   pyramid_grids, stride_ratio)


# ---------------------------------------------------------------- crop grid

def test_lerf_levels_and_stride_schedule():
    assert linspace_fracs() == [0.05, 0.125, 0.2, 0.275, 0.35, 0.425, 0.5]
    assert stride_ratio(0.05) == 1.0 and stride_ratio(0.1) == 0.75
    assert stride_ratio(0.15) == 0.5 and stride_ratio(0.5) == 0.5


def test_crop_positions_cover_the_axis_with_crops_inside():
    assert crop_positions(100, 30, 15.0) == [0, 14, 28, 42, 56, 70]
    assert crop_positions(100, 20, 10.0) == list(range(0, 81, 10))
    assert crop_positions(50, 50, 25.0) == [0]
    for extent, crop, stride in [(1080, 54, 54.0), (1440, 297, 148.5), (37, 5, 2.5)]:
        pos = crop_positions(extent, crop, stride)
        assert pos[0] == 0 and pos[-1] == extent - crop
        assert max(np.diff(pos), default=0) <= stride + 0.5


def test_level_grid_uses_image_height_and_shrinks_to_fit():
    lv = level_grid(1080, 1440, 0.05)
    assert lv.crop_px == 54 and len(lv.tops) == 20 and len(lv.lefts) == 27
    assert lv.centres_v[0] == 27 and lv.centres_v[-1] == 1080 - 27
    portrait = level_grid(400, 100, 0.5)  # 200 px crop would not fit a 100 px wide image
    assert portrait.crop_px == 100 and portrait.lefts == (0,)
    with pytest.raises(ValueError):
        pyramid_grids(100, 100, [0.2, 0.1])


# ---------------------------------------------------------------- interpolation

def test_axis_lerp_worked_example():
    centres = torch.tensor([[10.0, 20.0, 30.0, float("inf")]] * 4, dtype=torch.float64)
    count = torch.full((4,), 3)
    x = torch.tensor([20.0, 25.0, 3.0, 99.0], dtype=torch.float64)
    i0, i1, w = axis_lerp(centres, count, x)
    assert i0.tolist() == [1, 1, 0, 2] and i1.tolist() == [2, 2, 1, 2]
    assert w.tolist() == [0.0, 0.5, 0.0, 0.0]
    i0, i1, w = axis_lerp(centres[:1], torch.tensor([1]), x[:1])  # single centre
    assert (i0.item(), i1.item(), w.item()) == (0, 0, 0.0)


def test_uniform_axis_lerp_matches_general_one():
    i0, i1, w = uniform_axis_lerp(torch.tensor([6.0, 4.0, 0.0, 11.0], dtype=torch.float64), 4.0, 3)
    assert i0.tolist() == [1, 0, 0, 2] and i1.tolist() == [2, 1, 1, 2] and w.tolist() == [0, 0.5, 0, 0]
    x = torch.rand(200, dtype=torch.float64) * 40 - 5
    centres = (torch.arange(7, dtype=torch.float64) + 0.5) * 30 / 7
    a = axis_lerp(centres.expand(200, -1), torch.full((200,), 7), x)
    b = uniform_axis_lerp(x, 30 / 7, 7)
    value = lambda i0, i1, w: (1 - w) * centres[i0] + w * centres[i1]  # interpolated position
    assert torch.allclose(value(*a), value(*b))


def hand_built_pyramid():
    """2 images, 2 levels (fracs 0.1, 0.3): level 0 has centres v in {10, 30}, u in {10, 30, 50};
    level 1 a single row v = 20 and u in {20, 40}. Value of a cell = a distinct one-hot-ish code."""
    lv0 = LevelGrid(0.1, 20, (0, 20), (0, 20, 40))
    lv1 = LevelGrid(0.3, 20, (10,), (10, 30))
    n_cells = 2 * 6 + 2 * 2
    feats = np.random.default_rng(0).normal(size=(n_cells, 5)).astype(np.float16)
    return ClipPyramid(feats, (lv0, lv1), 2, (40, 60)), feats.astype(np.float32)


def q(pyr, img, u, v, f):
    t = lambda x: torch.tensor([x], dtype=torch.float32)
    return pyr.lookup(torch.tensor([img]), t(u), t(v), t(f))[0].numpy()


def test_pyramid_exact_at_crop_centres():
    pyr, f = hand_built_pyramid()
    # level 0 rows: image-major, then row, then column
    assert np.allclose(q(pyr, 0, 10, 10, 0.1), f[0])
    assert np.allclose(q(pyr, 0, 50, 30, 0.1), f[5])
    assert np.allclose(q(pyr, 1, 30, 10, 0.1), f[6 + 1])
    # level 1 starts after the 12 level-0 cells
    assert np.allclose(q(pyr, 1, 40, 20, 0.3), f[12 + 2 + 1])


def test_pyramid_bilinear_in_plane_and_linear_in_scale():
    pyr, f = hand_built_pyramid()
    assert np.allclose(q(pyr, 0, 20, 10, 0.1), (f[0] + f[1]) / 2, atol=1e-6)
    assert np.allclose(q(pyr, 0, 20, 20, 0.1), (f[0] + f[1] + f[3] + f[4]) / 4, atol=1e-6)
    assert np.allclose(q(pyr, 0, 15, 25, 0.1), 0.25 * 0.75 * f[0] + 0.25 * 0.25 * f[1]
                       + 0.75 * 0.75 * f[3] + 0.75 * 0.25 * f[4], atol=1e-6)
    a, b = q(pyr, 0, 30, 20, 0.1), q(pyr, 0, 30, 20, 0.3)
    assert np.allclose(q(pyr, 0, 30, 20, 0.2), (a + b) / 2, atol=1e-6)
    assert np.allclose(q(pyr, 0, 30, 20, 0.25), 0.25 * a + 0.75 * b, atol=1e-6)


def test_pyramid_clamps_outside_centres_and_scales():
    pyr, f = hand_built_pyramid()
    assert np.allclose(q(pyr, 0, 0.0, 0.0, 0.1), f[0])  # image corner -> corner crop
    assert np.allclose(q(pyr, 0, 60.0, 40.0, 0.1), f[5])
    assert np.allclose(q(pyr, 0, 10, 10, 0.01), f[0])  # below min_frac -> smallest level
    assert np.allclose(q(pyr, 0, 40, 20, 2.0), f[12 + 1])  # above max_frac -> largest level
    assert pyr.min_frac == 0.1 and pyr.max_frac == 0.3 and pyr.crop_fracs == [0.1, 0.3]
    with pytest.raises(IndexError):  # image 2 would read level 1's rows
        q(pyr, 2, 10, 10, 0.1)


def slow_lookup(pyr: ClipPyramid, img: int, u: float, v: float, frac: float) -> np.ndarray:
    """Reference: one query at a time, straight from the definition."""
    feats = np.asarray(pyr.features, dtype=np.float32)
    fracs = pyr.crop_fracs
    frac = min(max(frac, fracs[0]), fracs[-1])
    offset, per_level = 0, []
    for lv in pyr.levels:
        grid = feats[offset: offset + pyr.n_images * lv.cells_per_image]
        grid = grid.reshape(pyr.n_images, len(lv.tops), len(lv.lefts), -1)[img]
        per_level.append(np.stack([np.stack([np.interp(u, lv.centres_u, grid[i, :, d])
                                             for d in range(grid.shape[-1])])
                                   for i in range(grid.shape[0])]))  # (rows, d): lerp along u
        per_level[-1] = np.stack([np.interp(v, lv.centres_v, per_level[-1][:, d])
                                  for d in range(grid.shape[-1])])
        offset += pyr.n_images * lv.cells_per_image
    per_level = np.stack(per_level)
    return np.stack([np.interp(frac, fracs, per_level[:, d]) for d in range(per_level.shape[1])])


def test_vectorised_lookup_matches_slow_reference():
    levels = tuple(pyramid_grids(48, 70, [0.1, 0.25, 0.5]))
    cells = 3 * sum(lv.cells_per_image for lv in levels)
    feats = np.random.default_rng(1).normal(size=(cells, 4)).astype(np.float16)
    pyr = ClipPyramid(feats, levels, 3, (48, 70))
    g = torch.Generator().manual_seed(0)
    r = 64
    img = torch.randint(0, 3, (r,), generator=g)
    u, v = torch.rand(r, generator=g) * 80 - 5, torch.rand(r, generator=g) * 58 - 5
    frac = torch.rand(r, generator=g) * 0.7
    fast = pyr.lookup(img, u, v, frac).numpy()
    assert fast.dtype == np.float32 and fast.shape == (r, 4)
    slow = np.stack([slow_lookup(pyr, int(img[k]), float(u[k]), float(v[k]), float(frac[k]))
                     for k in range(r)])
    assert np.allclose(fast, slow, atol=1e-5)


# ---------------------------------------------------------------- building

class PositionSpy:
    """Embeds a crop as its mean (u / W, v / H), read from an image whose channels are those
    ramps: the pyramid's value at a crop centre must then be that centre's position."""
    name, embed_dim, input_px, device = "spy", 2, 8, torch.device("cpu")

    def __init__(self):
        self.calls = []

    def cache_key(self):
        return {"encoder": "spy"}

    def encode_crops(self, rgb, ids=None):
        self.calls.append(len(rgb))
        return rgb[:, :2].mean(dim=(2, 3))

    def encode_text(self, texts):
        raise NotImplementedError


def ramp_images(n, h, w):
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    img = torch.stack([u / w, v / h, torch.zeros_like(u)], -1)
    return img[None].repeat(n, 1, 1, 1)


def test_build_places_each_crop_at_its_centre_and_batches_invariantly():
    h, w = 40, 64
    spy = PositionSpy()
    pyr = build_clip_pyramid(PyramidInputs(ramp_images(2, h, w), None, spy, [0.2, 0.5]), batch_size=7, progress=False)
    assert max(spy.calls) == 7 and sum(spy.calls) == pyr.features.shape[0]
    g = torch.Generator().manual_seed(0)
    for lv in pyr.levels:
        uu, vv = np.meshgrid(lv.centres_u, lv.centres_v)
        r = uu.size
        out = pyr.lookup(torch.ones(r, dtype=torch.long), torch.tensor(uu.ravel()).float(),
                         torch.tensor(vv.ravel()).float(), torch.full((r,), lv.crop_frac))
        expect = np.stack([uu.ravel() / w, vv.ravel() / h], 1)
        assert np.allclose(out.numpy(), expect, atol=2e-3)  # fp16 storage
    # between centres, bilinear of a linear ramp is the ramp itself
    u = torch.rand(50, generator=g) * 30 + 15
    v = torch.rand(50, generator=g) * 10 + 15
    out = pyr.lookup(torch.zeros(50, dtype=torch.long), u, v, torch.full((50,), 0.35))
    assert np.allclose(out.numpy(), torch.stack([u / w, v / h], 1).numpy(), atol=2e-3)
    again = build_clip_pyramid(PyramidInputs(ramp_images(2, h, w), None, PositionSpy(), [0.2, 0.5]), batch_size=1000,
                               progress=False)
    assert np.array_equal(again.features, pyr.features)


def test_uint8_images_are_scaled_to_unit_range():
    img = (ramp_images(1, 20, 20) * 255).round().to(torch.uint8)
    pyr = build_clip_pyramid(PyramidInputs(img, None, PositionSpy(), [0.5]), progress=False)
    assert 0 < pyr.features.max() <= 1


# ---------------------------------------------------------------- DINO maps

def test_dino_maps_bilinear_between_cell_centres():
    feats = np.arange(2 * 2 * 3 * 1, dtype=np.float16).reshape(2, 2, 3, 1)  # 2 images, 2 x 3 cells
    maps = DinoMaps(feats, (8, 12))  # 4 px cells: centres v in {2, 6}, u in {2, 6, 10}
    assert maps.stride_px == (4.0, 4.0)

    def q(img, u, v):
        return maps.lookup(torch.tensor([img]), torch.tensor([float(u)]), torch.tensor([float(v)]))[0, 0].item()

    assert q(0, 2, 2) == 0 and q(0, 10, 6) == 5 and q(1, 6, 2) == 7
    assert q(0, 4, 2) == 0.5 and q(0, 4, 4) == 2.0  # midway: mean of 0, 1, 3, 4
    assert q(0, 0, 0) == 0 and q(0, 12, 8) == 5  # clamped


def test_tensor_backed_copies_give_the_same_lookups():
    pyr, _ = hand_built_pyramid()
    on_device = pyr.to("cpu")
    assert isinstance(on_device.features, torch.Tensor) and on_device.features.dtype == torch.float16
    g = torch.Generator().manual_seed(0)
    args = (torch.randint(0, 2, (30,), generator=g), torch.rand(30, generator=g) * 60,
            torch.rand(30, generator=g) * 40, torch.rand(30, generator=g) * 0.4)
    assert torch.equal(pyr.lookup(*args), on_device.lookup(*args))
    maps = DinoMaps(np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float16), (12, 16))
    assert torch.equal(maps.lookup(*args[:3]), maps.to("cpu").lookup(*args[:3]))


def test_build_dino_maps_keeps_stride_resolution():
    enc = ReferenceDinoEncoder(dim=8, stride_px=4)
    ids = torch.zeros(2, 16, 24, dtype=torch.long)
    ids[:, :, 12:] = 1
    maps = build_dino_maps(torch.rand(2, 16, 24, 3), ids, enc, progress=False)
    assert maps.features.shape == (2, 4, 6, 8) and maps.features.dtype == np.float16
    assert maps.stride_px == (4.0, 4.0)


class ExtentSpy(PositionSpy):
    """Embeds a crop as (mean crop_m, crop side in input pixels): what the pyramid told it."""

    def encode_crops(self, rgb, ids=None, crop_m=None):
        return torch.stack([crop_m.mean(dim=(1, 2)), torch.full((len(rgb),), float(rgb.shape[-1]))], 1)


def test_pyramid_passes_each_crops_physical_size():
    """crop_m = crop side in pixels x metres per pixel (depth / focal) of each pixel."""
    h, w = 40, 64
    px_m = torch.full((1, h, w), 0.002)
    px_m[:, :, w // 2:] = 0.004  # the right half is twice as far away
    inputs = PyramidInputs(ramp_images(1, h, w), torch.zeros(1, h, w, dtype=torch.long), ExtentSpy(), [0.2, 0.5],
                           px_m=px_m)
    pyr = build_clip_pyramid(inputs, progress=False)
    for lv in pyr.levels:
        left = pyr.lookup(torch.zeros(1, dtype=torch.long), torch.tensor([lv.centres_u[0]]).float(),
                          torch.tensor([lv.centres_v[0]]).float(), torch.tensor([lv.crop_frac]))
        assert float(left[0, 0]) == pytest.approx(lv.crop_px * 0.002, rel=1e-3)  # fp16 storage
