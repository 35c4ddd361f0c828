"""Evaluation protocols: label reader, localization, segmentation, image metrics, reports, ablations.

Shape annotations are checked at call time by the jaxtyping import hook in conftest.py.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerf.evaluation import ablations as abl
from lerf.evaluation import image_metrics as im
from lerf.evaluation import localization as loc
from lerf.evaluation import segmentation as seg
from lerf.evaluation.labels import LabelFormatError, load_label_dir, load_label_file, rasterize_polygons
from lerf.evaluation.report import format_table, write_report


# ---------------------------------------------------------------- labels


def _label(name="frame_00041.jpg", h=8, w=10, objects=None) -> dict:
    return {"info": {"name": name, "height": h, "width": w, "depth": 3, "note": ""},
            "objects": objects if objects is not None else []}


def _obj(category, bbox, polygon) -> dict:
    return {"category": category, "group": 1, "segmentation": polygon, "area": 1.0, "layer": 1.0,
            "bbox": bbox, "iscrowd": 0, "note": ""}


def test_label_dir_merges_objects_of_one_category(tmp_path):
    cup_a = _obj("sake cup", [1.0, 1.0, 3.0, 3.0], [[1, 1], [3, 1], [3, 3], [1, 3]])
    cup_b = _obj("sake cup", [6.0, 4.0, 8.0, 6.0], [[6, 4], [8, 4], [8, 6], [6, 6]])
    bowl = _obj("bowl", [0.0, 5.0, 2.0, 7.0], [[0, 5], [2, 5], [2, 7], [0, 7]])
    (tmp_path / "frame_00041.json").write_text(json.dumps(_label(objects=[cup_a, bowl, cup_b])))
    (tmp_path / "frame_00002.json").write_text(json.dumps(_label("frame_00002.jpg")))
    (tmp_path / "notes.txt").write_text("ignored")

    frames = load_label_dir(tmp_path)

    assert [f.frame_name for f in frames] == ["frame_00002.jpg", "frame_00041.jpg"]
    assert frames[0].categories == {} and frames[1].frame_number == 41
    frame = frames[1]
    assert (frame.height, frame.width) == (8, 10)
    assert set(frame.categories) == {"sake cup", "bowl"}
    cups = frame.categories["sake cup"]
    assert cups.boxes == [(1.0, 1.0, 3.0, 3.0), (6.0, 4.0, 8.0, 6.0)]
    mask = cups.mask(frame.height, frame.width)
    assert mask.shape == (8, 10) and mask.sum() == 9 + 9  # two 3x3 squares, boundary included
    assert mask[1:4, 1:4].all() and mask[4:7, 6:9].all() and not mask[0].any()


# The "apple" object of lerf_ovs teatime frame_00002.json (LangSplat's release), keys as released.
APPLE = {"category": "apple", "group": 1, "area": 1655.5, "layer": 5.0, "iscrowd": 0, "note": "",
         "bbox": [321.0, 336.0, 365.0, 383.0],
         "segmentation": [[344, 336], [340, 337], [337, 339], [334, 339], [332, 340], [328, 343],
                          [323, 348], [322, 351], [321, 354], [321, 361], [322, 365], [323, 368],
                          [324, 370], [326, 373], [335, 382], [338, 383], [350, 383], [353, 382],
                          [355, 381], [360, 376], [363, 370], [364, 367], [365, 363], [365, 353],
                          [364, 349], [363, 347], [361, 344], [359, 341], [357, 339], [354, 337],
                          [350, 336]]}


def test_released_object_rasterizes_inside_its_box_with_picks_count(tmp_path):
    path = tmp_path / "frame_00002.json"
    path.write_text(json.dumps(_label("frame_00002.jpg", 730, 988, [APPLE])))
    frame = load_label_file(path)
    mask = frame.categories["apple"].mask(frame.height, frame.width)
    ys, xs = np.nonzero(mask)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == tuple(APPLE["bbox"])
    # Pick's theorem: a closed integer polygon holds A + B/2 + 1 lattice points (B: boundary
    # lattice points); the drawn edges may add at most max(|dx|, |dy|) - gcd pixels per edge.
    vertices = np.array(APPLE["segmentation"])
    steps = np.abs(np.roll(vertices, -1, axis=0) - vertices)
    boundary = sum(math.gcd(int(a), int(b)) for a, b in steps)
    lattice = APPLE["area"] + boundary / 2 + 1
    assert lattice <= mask.sum() <= lattice + sum(int(max(a, b)) - math.gcd(int(a), int(b))
                                                  for a, b in steps)


def test_rasterize_triangle_worked_example():
    mask = rasterize_polygons([np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])], 5, 5)
    ys, xs = np.mgrid[0:5, 0:5]
    np.testing.assert_array_equal(mask, xs + ys <= 4)


def test_rasterize_truncates_vertices_and_clips_to_image():
    # (0.9, 0.9)-(2.7, 2.7) truncates to the 2x2 pixel square (0, 0)-(2, 2): 3x3 pixels
    square = np.array([[0.9, 0.9], [2.7, 0.9], [2.7, 2.7], [0.9, 2.7]])
    assert rasterize_polygons([square], 4, 4).sum() == 9
    big = np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0]])
    assert rasterize_polygons([big], 3, 4).all()


def test_missing_label_file_and_dir_name_the_path(tmp_path):
    with pytest.raises(LabelFormatError, match="frame_00001.json: label file not found"):
        load_label_file(tmp_path / "frame_00001.json")
    with pytest.raises(LabelFormatError, match="no frame_"):
        load_label_dir(tmp_path)
    with pytest.raises(LabelFormatError, match="expected a folder"):
        load_label_dir(tmp_path / "absent")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"objects": []}), '"info" object'),
        (json.dumps({"info": {"name": "f.jpg", "height": 4}, "objects": []}), '"width"'),
        (json.dumps(_label(objects=None) | {"objects": {}}), '"objects" list'),
        (json.dumps(_label(objects=[{"bbox": [0, 0, 1, 1]}])), '"category"'),
        (json.dumps(_label(objects=[_obj("cup", [0, 0, 1], [[0, 0], [1, 0], [1, 1]])])), '"bbox"'),
        (json.dumps(_label(objects=[_obj("cup", [0, 0, 1, 1], [[0, 0], [1, 0]])])), "segmentation"),
        (json.dumps(_label(objects=[_obj("cup", [0, 0, 1, 1], [0, 0, 1, 0, 1, 1])])), "segmentation"),
    ],
)
def test_malformed_label_file_says_what_was_expected(tmp_path, content, expected):
    path = tmp_path / "frame_00007.json"
    path.write_text(content)
    with pytest.raises(LabelFormatError) as err:
        load_label_file(path)
    assert "frame_00007.json" in str(err.value) and expected in str(err.value)
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------- filters vs. direct loops


def _reflect101_loop(i: int, n: int) -> int:
    """OpenCV borderInterpolate for BORDER_REFLECT_101, bouncing until inside."""
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def _mean_filter_loop(image: np.ndarray, k: int) -> np.ndarray:
    h, w = image.shape
    out = np.zeros_like(image, dtype=np.float64)
    offsets = range(-(k // 2), k - k // 2)  # anchor k // 2, as cv2.filter2D's default
    for i in range(h):
        for j in range(w):
            out[i, j] = sum(image[_reflect101_loop(i + di, h), _reflect101_loop(j + dj, w)]
                            for di in offsets for dj in offsets) / k**2
    return out


def _mode_filter_loop(mask: np.ndarray, scale: int, langsplat_bounds: bool) -> np.ndarray:
    """The majority rule of LangSplat's utils.smooth, written out as loops."""
    h, w = mask.shape
    row_end, col_end = (h - 1, w - 1) if langsplat_bounds else (h, w)
    out = mask.copy()
    for i in range(h):
        for j in range(w):
            window = mask[max(0, i - scale): min(i + scale + 1, row_end),
                          max(0, j - scale): min(j + scale + 1, col_end)].reshape(-1)
            out[i, j] = np.argmax(np.bincount(window, minlength=2))
    return out


def test_reflect101_index_worked_example():
    assert loc.reflect101_index(4, 3, 2).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert loc.reflect101_index(3, 7, 0).tolist() == [_reflect101_loop(i, 3) for i in range(-7, 3)]


@pytest.mark.parametrize("k", [3, 4, 5, 30])
def test_mean_filter_matches_loops_including_borders(k):
    image = torch.rand(9, 11, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    expected = _mean_filter_loop(image.numpy(), k)
    np.testing.assert_allclose(loc.mean_filter(image, k).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("langsplat_bounds", [False, True])
def test_majority_filter_matches_loops_including_borders(k, langsplat_bounds):
    mask = torch.rand(9, 11, generator=torch.Generator().manual_seed(k)) > 0.5
    expected = _mode_filter_loop(mask.numpy().astype(np.int64), k // 2, langsplat_bounds)
    got = seg.majority_filter(mask, k, exclude_last_row_col=langsplat_bounds)
    np.testing.assert_array_equal(got.numpy(), expected.astype(bool))


def test_majority_filter_worked_example_and_ties_go_to_background():
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1:4, 1:4] = True
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[2, 1:4] = expected[1:4, 2] = True  # centre + edge midpoints; corners see 4 of 9
    assert torch.equal(seg.majority_filter(mask, 3), expected)
    # a 2x2 corner window with 2 True / 2 False is a tie -> False
    tie = torch.tensor([[True, False, False], [True, False, False], [False, False, False]])
    assert not seg.majority_filter(tie, 3)[0, 0]
    with pytest.raises(ValueError, match="odd"):
        seg.majority_filter(mask, 4)


# ---------------------------------------------------------------- localization


def test_argmax_and_box_rules():
    image = torch.tensor([[0.0, 5.0], [5.0, 1.0]])
    assert loc.argmax_pixels(image).tolist() == [[1, 0], [0, 1]]
    assert loc.argmax_pixel(image) == (1, 0)
    assert loc.point_in_boxes(4, 2, [[0, 0, 4, 4]])  # edges count
    assert not loc.point_in_boxes(5, 2, [[0, 0, 4, 4]])
    assert loc.point_in_boxes(2, 2, [[4, 4, 0, 0]])  # corners in either order
    assert loc.point_in_boxes(9, 9, [[0, 0, 1, 1], [8, 8, 10, 10]])  # any box of the category


def test_localize_planted_maximum_inside_and_outside_box():
    relevancy = torch.zeros(20, 30)
    relevancy[5, 12] = 1.0  # (x=12, y=5)
    localize = loc.localize
    assert localize(relevancy, [[10, 3, 14, 8]], protocol="lerf").hit
    miss = localize(relevancy, [[20, 10, 25, 15]], protocol="lerf", query="cup", view="v")
    assert not miss.hit and (miss.x, miss.y) == (12, 5) and miss.query == "cup"


def test_mean_filter_moves_argmax_from_a_spike_to_a_broad_blob():
    relevancy = torch.zeros(60, 80)
    relevancy[50, 5] = 1.0  # a one-pixel spike, the raw maximum
    relevancy[10:30, 40:70] = 0.6  # the object: a broad, weaker response
    box = [[40, 10, 69, 29]]
    assert not loc.localize(relevancy, box, protocol="lerf").hit
    smoothed = loc.localize(relevancy, box, protocol="lerf_ovs")
    assert smoothed.hit and 40 <= smoothed.x <= 69 and 10 <= smoothed.y <= 29


def test_localize_uses_the_level_with_the_highest_smoothed_maximum():
    levels = torch.zeros(2, 40, 40)
    levels[0, 35, 35] = 1.0  # raw spike on level 0, tiny after smoothing
    levels[1, 5:25, 5:25] = 0.5  # broad response on level 1
    result = loc.localize(levels, [[5, 5, 24, 24]], protocol="lerf_ovs")
    assert result.level == 1 and result.hit
    assert loc.localize(levels, [[5, 5, 24, 24]], protocol="lerf").level == 0
    # an unknown protocol is refused: a user (no test-time type checker) sees the ValueError
    code = ("import torch\nfrom lerf.evaluation.localization import localize\n"
            "localize(torch.zeros(2, 40, 40), [[0, 0, 1, 1]], protocol='nope')")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=120)
    assert "ValueError: unknown localization protocol 'nope'; use 'lerf' or 'lerf_ovs'" in done.stderr, done.stderr


def test_summarize_localization_worked_example():
    r = loc.LocalizationResult
    results = [r("cup", "a", True, 0, 0, 0, "s1"), r("bowl", "a", False, 0, 0, 0, "s1"),
               r("cup", "b", True, 0, 0, 0, "s1"), r("cup", "a", False, 0, 0, 0, "s2")]
    summary = loc.summarize_localization(results)
    assert summary["overall"] == pytest.approx(2 / 4)
    assert summary["per_scene"] == {"s1": pytest.approx(2 / 3), "s2": 0.0}
    assert summary["mean_over_scenes"] == pytest.approx(1 / 3)
    assert summary["per_view"]["s1"] == {"a": 0.5, "b": 1.0}
    assert summary["per_query"]["s1"] == {"cup": 1.0, "bowl": 0.0}
    assert summary["num_queries"] == 4 and len(summary["results"]) == 4


# ---------------------------------------------------------------- segmentation


def test_normalize_clip_worked_example():
    out = seg.normalize_clip(torch.tensor([[0.0, 1.0, 2.0, 4.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 0.0, 1.0]]))
    # threshold 0.4 after the [-1, 1] map == normalised value above 0.7
    ramp = torch.linspace(0, 1, 11)[None]
    assert (seg.normalize_clip(ramp) > 0.4).nonzero()[:, 1].tolist() == [8, 9, 10]


def test_iou_worked_example():
    pred = torch.zeros(4, 4, dtype=torch.bool)
    gt = torch.zeros(4, 4, dtype=torch.bool)
    pred[0, 0:4] = True  # 4 pixels
    gt[0, 1:4] = gt[1, 0:3] = True  # 6 pixels, 3 shared
    assert seg.iou(pred, gt) == pytest.approx(3 / 7)
    # LangSplat: 0 / 0 is NaN, and the pair is left out of the means
    assert math.isnan(seg.iou(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)))
    results = [seg.SegmentationResult("cup", "a", 0.5, 0), seg.SegmentationResult("cup", "b", float("nan"), 0),
               seg.SegmentationResult("bowl", "a", 0.0, 0)]
    summary = seg.summarize_segmentation(results)
    assert summary["miou"] == pytest.approx(0.25) and summary["num_undefined"] == 1
    assert summary["per_category"][""]["cup"] == pytest.approx(0.5) and summary["results"][1]["iou"] is None


def test_segment_worked_example():
    # 3x3 block of relevancy 1 in a 6x6 map; no mean filter (k=1), 3x3 mode filter:
    # mask = block -> majority keeps centre + 4 edge midpoints (5 px); gt = the block (9 px).
    relevancy = torch.zeros(6, 6)
    relevancy[1:4, 1:4] = 1.0
    gt = np.zeros((6, 6), dtype=bool)
    gt[1:4, 1:4] = True
    result, pred = seg.segment(relevancy, gt, smooth_k=1, mode_k=3, query="cup", view="v")
    assert pred.sum() == 5 and result.iou == pytest.approx(5 / 9) and result.query == "cup"


def test_segment_protocol_defaults_recover_a_planted_object():
    relevancy = torch.full((64, 80), 0.2)
    relevancy[20:44, 30:60] = 0.9
    relevancy += 0.01 * torch.rand(64, 80, generator=torch.Generator().manual_seed(0))
    gt = torch.zeros(64, 80, dtype=torch.bool)
    gt[20:44, 30:60] = True
    result, pred = seg.segment(relevancy, gt)
    assert result.iou > 0.5 and not pred[:10].any()  # found the object, nothing far from it
    assert torch.equal(seg.relevancy_to_mask(relevancy), pred)


def test_summarize_segmentation_worked_example():
    r = seg.SegmentationResult
    summary = seg.summarize_segmentation(
        [r("cup", "a", 0.5, 0, "s"), r("cup", "b", 1.0, 0, "s"), r("bowl", "a", 0.0, 0, "s")])
    assert summary["miou"] == pytest.approx(0.5)
    assert summary["per_category"]["s"] == {"cup": 0.75, "bowl": 0.0}
    assert summary["per_view"]["s"] == {"a": 0.25, "b": 1.0}


# ---------------------------------------------------------------- image metrics


def test_psnr_identical_and_known_noise():
    gt = torch.rand(16, 16, 3, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    assert im.psnr(gt, gt) == math.inf
    signs = torch.randint(0, 2, gt.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert im.psnr(gt + 0.1 * signs, gt) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    noise = 0.05 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(2))
    mse = float(torch.mean(noise.double() ** 2))
    assert im.psnr(gt + noise, gt) == pytest.approx(-10 * math.log10(mse), rel=1e-5)


def test_ssim_sanity():
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(24, 20, 3, generator=gen)
    ssim = im.ssim
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    slightly = (gt + 0.02 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    very = (gt + 0.3 * torch.randn(gt.shape, generator=gen)).clamp(0, 1)
    assert 1.0 > ssim(slightly, gt) > ssim(very, gt) > 0.0
    assert ssim(slightly, gt) == pytest.approx(ssim(gt, slightly), abs=1e-12)
    assert torch.allclose(im.gaussian_window(3, 1.0).float(), torch.tensor([0.2741, 0.4519, 0.2741]),
                          atol=1e-4)
    with pytest.raises(ValueError, match="at least 11x11"):
        im.ssim(gt[:8], gt[:8])


# ---------------------------------------------------------------- reports and ablations


def test_summaries_report_each_query_level():
    results = [loc.LocalizationResult("teapot lid", "a", True, 0, 0, 0, query_level="part"),
               loc.LocalizationResult("mug handle", "a", False, 0, 0, 0, query_level="part"),
               loc.LocalizationResult("tea set", "a", True, 0, 0, 0, query_level="group")]
    summary = loc.summarize_localization(results)
    assert summary["per_level"] == {"part": 0.5, "group": 1.0} and summary["num_per_level"] == {"part": 2, "group": 1}
    assert "### per level" in format_table(summary)
    seg_summary = seg.summarize_segmentation([seg.SegmentationResult("red mug", "a", 0.6, 0, query_level="object"),
                                              seg.SegmentationResult("cup", "a", 0.2, 0)])  # unlevelled
    assert seg_summary["per_level"] == {"object": 0.6} and seg_summary["miou"] == pytest.approx(0.4)


def test_write_report_localization_and_segmentation(tmp_path):
    loc_result = loc.summarize_localization(
        [loc.LocalizationResult("sake cup", "frame_00041", True, 3, 4, 0, "teatime")])
    write_report(loc_result, tmp_path / "loc.json", tmp_path / "out" / "loc.md")
    assert json.loads((tmp_path / "loc.json").read_text())["overall"] == 1.0
    table = (tmp_path / "out" / "loc.md").read_text()
    assert "| teatime | 1.0000 |" in table and "| sake cup | 1.0000 |" in table
    seg_result = seg.summarize_segmentation([seg.SegmentationResult("bowl", "f", 0.25, 0, "ramen")])
    assert "mIoU 0.2500" in format_table(seg_result) and "| bowl | 0.2500 |" in format_table(seg_result)
    with pytest.raises(ValueError):
        format_table({"psnr": 20.0})


def _fake_run(sweep, num, overrides, eval_json=None, extra=None):
    run = sweep / str(num)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    if eval_json is not None:
        (run / "eval.json").write_text(eval_json)
    for name, data in (extra or {}).items():
        (run / name).write_text(json.dumps(data))


def test_ablation_table_lists_succeeded_and_failed_runs(tmp_path):
    sweep = tmp_path / "multirun"
    _fake_run(sweep, 0, ["experiment=full", "seed=0"],
              json.dumps({"psnr": 24.5, "ssim": 0.81, "steps": 100, "train_time_s": 12.0}),
              {"localization.json": {"overall": 0.75, "per_level": {"part": 0.5, "object": 1.0}},
               "segmentation.json": {"miou": 0.4, "per_level": {"object": 0.55}}})
    _fake_run(sweep, 1, ["experiment=no_dino", "seed=0"])  # crashed: no eval.json
    _fake_run(sweep, 2, ["experiment=no_clip", "seed=0"], "{truncated")  # killed mid-write

    table_path, png_path = abl.summarize_sweep(sweep, tmp_path / "report")

    table = table_path.read_text()
    rows = {line.split("|")[2].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "seed=0" in table.split("|")[0]  # shared overrides named once, above the table
    # per-level columns read nested keys; a level the labels lack (group) shows "-"
    assert "| ok | 75.0 | 50.0 | 100.0 | - | 40.0 | 55.0 | 24.50 | 0.810 | 100 | 12 |" in rows["experiment=full"]
    assert "**failed** (no eval.json)" in rows["experiment=no_dino"]
    assert "**failed**" in rows["experiment=no_clip"] and "not valid JSON" in rows["experiment=no_clip"]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_names_drop_shared_overrides():
    runs = [abl.RunRecord("0", ["experiment=full", "seed=0"], None),
            abl.RunRecord("1", ["experiment=no_dino", "seed=0"], None)]
    assert abl.variant_names(runs) == (["experiment=full", "experiment=no_dino"], ["seed=0"])
    assert abl.variant_names([abl.RunRecord("0", [], None)]) == (["run 0"], [])


def test_collect_runs_needs_job_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job dirs"):
        abl.collect_runs(tmp_path)
