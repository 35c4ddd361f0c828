"""The reference CLIP encoder as a measuring instrument: CLIP-like geometry and a crop rule in metres."""
import math

import pytest
import torch

from lerf.demo.reference import ALPHA, RHO, ReferenceClipEncoder, part_readings
from lerf.query.relevancy import relevancy

CANON = ["object", "things", "stuff", "texture"]
# Part ids: 0 background, 1 table, 2 teapot (unnamed rest), 3 teapot lid, 4 red mug, 5 red apple,
# 6 white mug. Sizes in metres, as the demo scene writes them.
HIER = {
    "parts": {"1": {"name": None, "object": 1, "size_m": 0.9},
              "2": {"name": None, "object": 2, "size_m": 0.27},
              "3": {"name": "teapot lid", "object": 2, "size_m": 0.09},
              "4": {"name": None, "object": 3, "size_m": 0.15},
              "5": {"name": None, "object": 4, "size_m": 0.09},
              "6": {"name": None, "object": 5, "size_m": 0.14}},
    "objects": {"1": {"name": "table", "size_m": 0.9, "group": None, "stuff": True},
                "2": {"name": "blue teapot", "size_m": 0.27, "group": "tea set"},
                "3": {"name": "red mug", "size_m": 0.15, "group": "tea set"},
                "4": {"name": "red apple", "size_m": 0.09, "group": "fruit"},
                "5": {"name": "white mug", "size_m": 0.14, "group": None}},
}
NAMES = ["teapot lid", "blue teapot", "tea set", "red mug", "red apple", "white mug", "fruit", "table", "blue", "red"]
S = 16  # crop side in (resized) pixels


@pytest.fixture(scope="module")
def enc():
    return ReferenceClipEncoder(HIER, CANON, dim=64)


def crop(layout: dict[int, tuple[slice, slice]], background: int = 1) -> torch.Tensor:
    """One S x S part-id crop: `background` everywhere, then each id over its (rows, cols)."""
    ids = torch.full((1, S, S), background, dtype=torch.long)
    for pid, (rows, cols) in layout.items():
        ids[0, rows, cols] = pid
    return ids


def nearest(enc, ids, crop_m: float) -> str:
    emb = enc.encode_crops(torch.zeros(1, 3, S, S), ids, torch.full(ids.shape, crop_m))
    return NAMES[int((emb @ enc.encode_text(NAMES).T).argmax())]


def rel(enc, emb, query):
    return float(relevancy(emb, enc.encode_text([query])[0], enc.encode_text(CANON), 10.0)[0])


# ------------------------------------------------------------------------------- geometry

def test_unrelated_texts_share_only_the_common_component(enc):
    v = enc.encode_text(["blue teapot", "red apple", "tea set", "table"])
    off = (v @ v.T)[~torch.eye(4, dtype=torch.bool)]
    assert torch.allclose(off, torch.full((12,), RHO), atol=1e-5)  # CLIP-like cos ~0.2
    assert torch.allclose(v.norm(dim=-1), torch.ones(4))
    assert torch.equal(enc.encode_text([" Red  Mug"]), enc.encode_text(["red mug"]))


def test_canonical_phrases_sit_near_the_shared_part_and_relevancy_is_sharp(enc):
    canon = enc.encode_text(CANON)
    objects = enc.encode_text(["blue teapot", "red mug", "tea set"])
    assert (canon @ canon.T)[~torch.eye(4, dtype=torch.bool)].min() > 0.7  # generic phrases are alike
    assert (canon @ objects.T).max() < 0.45
    mug = enc.encode_text(["red mug"])
    assert rel(enc, mug, "red mug") > 0.99  # on target
    for other in ("blue teapot", "tea set", "table"):  # off target
        assert rel(enc, enc.encode_text([other]), "red mug") < 0.2


def test_attributes_and_categories_compose(enc):
    red_mug, red_apple, white_mug, teapot = enc.encode_text(["red mug", "red apple", "white mug", "blue teapot"])
    unrelated = float(red_mug @ teapot)
    assert float(red_mug @ red_apple) > unrelated + 0.1  # share "red"
    assert float(red_mug @ white_mug) > unrelated + 0.1  # share "mug"
    # distractors score between off-target and on-target
    for distractor in ("red apple", "white mug"):
        assert 0.2 < rel(enc, enc.encode_text([distractor]), "red mug") < 0.8
    lid = enc.encode_text(["teapot lid"])[0]
    assert float(lid @ teapot) > unrelated + 0.1  # a part is related to its object


# ------------------------------------------------------------------------------- crops

def test_crop_meaning_follows_its_physical_size(enc):
    lid_only = crop({3: (slice(None), slice(None))})
    assert nearest(enc, lid_only, 0.05) == "teapot lid"  # a small crop on the lid
    teapot = crop({2: (slice(2, 14), slice(2, 14)), 3: (slice(2, 5), slice(5, 11))})
    assert nearest(enc, teapot, 0.25) == "blue teapot"  # a crop about the teapot's size
    tea_set = crop({2: (slice(3, 13), slice(0, 8)), 4: (slice(5, 13), slice(10, 15))})
    assert nearest(enc, tea_set, 0.5) == "tea set"  # a crop over both members
    # the same large crop with one member only stays the object
    assert nearest(enc, crop({2: (slice(4, 12), slice(0, 8))}), 0.5) == "blue teapot"
    # the same pixels read differently when the camera is closer (smaller crop in metres)
    assert nearest(enc, lid_only, 0.2) == "blue teapot"


def test_too_close_reads_as_texture_and_cannot_tell_red_things_apart(enc):
    mug, apple = crop({4: (slice(None), slice(None))}), crop({5: (slice(None), slice(None))})
    tiny = 0.25 * ALPHA * 0.09
    emb = [enc.encode_crops(torch.zeros(1, 3, S, S), ids, torch.full(ids.shape, tiny)) for ids in (mug, apple)]
    assert torch.allclose(emb[0], emb[1], atol=1e-3) and nearest(enc, mug, tiny) == "red"
    assert nearest(enc, mug, 0.08) == "red mug" and nearest(enc, apple, 0.06) == "red apple"


def test_levels_change_smoothly_and_sum_to_one(enc):
    ids = crop({3: (slice(None), slice(None))})
    sizes = torch.logspace(math.log10(0.005), math.log10(1.0), 40)
    w = torch.cat([enc.level_weights(ids, torch.full(ids.shape, float(s)))[0, 0, 0][None] for s in sizes])
    assert torch.allclose(w.sum(-1), torch.ones(40))
    peak = w.argmax(-1)
    assert peak.tolist() == sorted(peak.tolist())  # texture -> part -> object, in order
    assert set(peak.tolist()) == {0, 1, 2}  # no group: the crop covers one member
    assert (w[1:] - w[:-1]).abs().max() < 0.5  # no jumps between neighbouring sizes


def test_objects_outweigh_the_table_they_stand_on(enc):
    """Salience: a crop one quarter mug, three quarters table reads as the mug."""
    ids = crop({4: (slice(0, 8), slice(0, 8))})
    assert nearest(enc, ids, 0.1) == "red mug"


def test_background_is_background_at_every_scale_and_bad_input_raises(enc):
    bg = crop({}, background=0)
    for s in (0.01, 0.1, 1.0):
        emb = enc.encode_crops(torch.zeros(1, 3, S, S), bg, torch.full(bg.shape, s))
        assert torch.allclose(emb, enc.encode_text(["background"]), atol=1e-6)
    with pytest.raises(ValueError, match="crop sizes in metres"):
        enc.encode_crops(torch.zeros(1, 3, S, S), bg)
    with pytest.raises(ValueError, match=r"\[9\]"):
        enc.encode_crops(torch.zeros(1, 3, S, S), crop({9: (slice(0, 2), slice(0, 2))}), torch.ones(1, S, S))


def test_part_readings_parse_the_demo_hierarchy():
    from lerf.demo.scene import build_demo_scene, hierarchy

    readings = part_readings(hierarchy(build_demo_scene(0)))
    by_part = {r.part: r for r in readings.values() if r.part}
    assert {"teapot lid", "teapot spout", "mug handle", "cactus pot"} <= set(by_part)
    lid = by_part["teapot lid"]
    assert (lid.object, lid.group, lid.texture) == ("blue teapot", "tea set", "blue")
    assert lid.part_size_m < lid.object_size_m
    groups = {r.object: r.group for r in readings.values()}
    assert groups["yellow banana"] == groups["red apple"] == "fruit"


# ------------------------------------------------------------------------------- canonical roles

def test_texture_and_stuff_hold_down_plain_surfaces(enc):
    """A close-up of the table reads "surface": cosine 0.4 with "object" (as any ordinary text),
    0.4 + 0.4 x 0.707 = 0.683 with "texture" (its lean is "surface" alone). For an unrelated query
    (cosine 0.2) relevancy is sigmoid(10 x (0.2 - 0.4)) = 0.119 with "object" alone or the max over
    the canonicals, sigmoid(10 x (0.2 - 0.683)) = 0.0079 with LERF's min."""
    surface = enc.encode_crops(torch.zeros(1, 3, S, S), crop({}), torch.full((1, S, S), 0.01))  # all table
    canon = enc.encode_text(CANON)
    sims = (surface @ canon.T)[0]
    assert sims[0].item() == pytest.approx(0.4, abs=1e-4) and sims[3].item() == pytest.approx(0.6828, abs=1e-4)
    assert enc.role_names("stuff") == ["background", "surface", "table"] and enc.role_names("object") == []
    q = enc.encode_text(["blue teapot"])[0]
    assert float(relevancy(surface, q, canon, 10.0)[0]) == pytest.approx(0.0079, abs=1e-4)
    assert float(relevancy(surface, q, canon, 10.0, "max")[0]) == pytest.approx(0.1192, abs=1e-4)
    assert float(relevancy(surface, q, canon[:1], 10.0)[0]) == pytest.approx(0.1192, abs=1e-4)
    # an object crop is held down by all four alike: the roles only act on surfaces
    mug = enc.encode_text(["red mug"])
    assert torch.allclose(mug @ canon.T, torch.full((1, 4), 0.4), atol=1e-5)


def test_canonical_phrases_are_generic_whatever_the_query_uses():
    """The supervision must not change with relevancy.canonical_phrases (one_canonical re-scores)."""
    one, four = ReferenceClipEncoder(HIER, ["object"], dim=64), ReferenceClipEncoder(HIER, CANON, dim=64)
    assert one.cache_key() == four.cache_key()
    assert torch.equal(one.encode_text(CANON), four.encode_text(CANON))
