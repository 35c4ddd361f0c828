"""Encoders (reference, OpenCLIP, DINO), their factory, and the feature cache."""
import hashlib
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lerf.demo.reference import PART_SHARE, ReferenceClipEncoder, ReferenceDinoEncoder
from lerf.encoders import cache as cache_mod
from lerf.encoders.base import WeightsNotFoundError
from lerf.encoders.cache import load_or_build_clip_pyramid, load_or_build_dino_maps
from lerf.encoders.factory import build_clip_encoder, build_dino_encoder
from lerf.encoders.pyramid import PyramidInputs

LABELS = {1: "table", 2: "red mug", 3: "blue book"}
CANONICAL = ["object", "things", "stuff", "texture"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Belt and braces: any hub call that slipped through fails instead of reaching the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---------------------------------------------------------------- reference CLIP
# (its embedding geometry and crop rule: tests/test_reference_clip.py)

def flat_hierarchy(labels: dict[int, str]) -> dict:
    """A hierarchy whose part ids are the object ids (no named parts, no groups), 10 cm objects."""
    return {"parts": {str(k): {"name": None, "object": k, "size_m": 0.1} for k in labels},
            "objects": {str(k): {"name": n, "size_m": 0.1, "group": None} for k, n in labels.items()}}


HIER = flat_hierarchy(LABELS)


def build_pyr(cache_dir, images, ids, enc, fracs, **kw):
    """The cached pyramid with every pixel 1 cm wide (5-px crops are 5 cm: object scale)."""
    inputs = PyramidInputs(images, ids, enc, fracs, px_m=torch.full(ids.shape, 0.01))
    return load_or_build_clip_pyramid(cache_dir, inputs, **kw)


def test_reference_vectors_identical_across_processes():
    """Seeds come from SHA-256 of the text, not Python's per-process salted hash()."""
    code = ("from lerf.demo.reference import ReferenceClipEncoder as E;"
            "print(E({'parts': {}, 'objects': {}}, dim=16).encode_text(['red mug', 'stuff']).tolist())")
    here = ReferenceClipEncoder({"parts": {}, "objects": {}}, dim=16).encode_text(["red mug", "stuff"]).tolist()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
        assert json.loads(out.stdout.strip().splitlines()[-1]) == here


# ---------------------------------------------------------------- reference DINO

def test_reference_dino_features_depend_on_id_and_colour():
    enc = ReferenceDinoEncoder(dim=16, stride_px=4)
    rgb = torch.full((1, 3, 8, 16), 0.5)
    ids = torch.zeros(1, 8, 16, dtype=torch.long)
    ids[:, :, 8:] = 1
    f = enc.encode_dense(rgb, ids)
    assert f.shape == (1, 2, 4, 16) and enc.stride_px(8, 16) == (4.0, 4.0)
    assert torch.allclose(f[0, 0, 0], enc.id_vector(0)) and torch.allclose(f[0, 1, 3], enc.id_vector(1))
    red = rgb.clone()
    red[:, 0] = 1.0
    assert not torch.allclose(enc.encode_dense(red, ids), f)
    assert enc.encode_dense(rgb).abs().max() < 1e-6  # grey, no ids: nothing to see
    assert enc.grid_hw(10, 30) == (2, 8)  # round(10/4), round(30/4)


def test_reference_dino_with_a_hierarchy_tells_parts_of_one_object_apart():
    # part 5 (lid) and part 4 (body) belong to object 3; part 2 to object 2
    hier = {"parts": {"2": {"name": None, "object": 2, "size_m": 0.15},
                      "4": {"name": None, "object": 3, "size_m": 0.27},
                      "5": {"name": "teapot lid", "object": 3, "size_m": 0.09}},
            "objects": {"2": {"name": "red mug", "size_m": 0.15, "group": None},
                        "3": {"name": "blue teapot", "size_m": 0.27, "group": None}}}
    enc = ReferenceDinoEncoder(dim=64, stride_px=1, hierarchy=hier)
    rgb = torch.full((1, 3, 1, 3), 0.5)  # grey: only the identity is seen
    f = torch.nn.functional.normalize(enc.encode_dense(rgb, torch.tensor([[[4, 5, 2]]]))[0, 0], dim=-1)
    body, lid, mug = f
    assert abs(float(body @ lid) - PART_SHARE) < 1e-5  # same object, another part
    assert abs(float(body @ mug)) < 1e-5  # another object
    assert enc.cache_key() != ReferenceDinoEncoder(dim=64, stride_px=1).cache_key()
    with pytest.raises(ValueError, match=r"part ids \[7\]"):
        enc.encode_dense(rgb, torch.tensor([[[4, 5, 7]]]))


def test_the_demo_scene_gives_the_reference_dino_part_ids_and_its_hierarchy():
    from types import SimpleNamespace

    from lerf.config import TrainConfig
    from lerf.encoders.factory import dino_encoder_for, dino_ids_for

    hier = {"parts": {"1": {"name": None, "object": 1, "size_m": 0.2}},
            "objects": {"1": {"name": "red mug", "size_m": 0.2, "group": None}}}
    part_ids, object_ids = torch.ones(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7)
    demo = SimpleNamespace(demo=SimpleNamespace(hierarchy=hier, part_ids=part_ids), object_ids=object_ids)
    cfg = TrainConfig()
    cfg.encoder.dino = "reference"
    assert dino_ids_for(cfg, demo) is part_ids and dino_encoder_for(cfg, demo, torch.device("cpu")).hierarchy == hier
    plain = SimpleNamespace(demo=None, object_ids=object_ids)  # ids but no parts
    assert dino_ids_for(cfg, plain) is object_ids and dino_encoder_for(cfg, plain, torch.device("cpu")).hierarchy is None
    cfg.encoder.dino = "dino"  # the real encoder never reads ids
    assert dino_ids_for(cfg, demo) is object_ids


# ---------------------------------------------------------------- cache

class CountingClip(ReferenceClipEncoder):
    def __init__(self, *a, on_call=None, **kw):
        super().__init__(*a, **kw)
        self.calls, self.on_call = 0, on_call

    def encode_crops(self, rgb, ids=None, crop_m=None):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        return super().encode_crops(rgb, ids, crop_m)


def scene(n=2, h=24, w=32):
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(n, h, w, dtype=torch.long)
    ids[:, 4:16, 4:14] = 1
    ids[:, 10:20, 18:30] = 2
    return torch.rand(n, h, w, 3, generator=g), ids


FRACS = [0.2, 0.35, 0.5]


def test_cache_reuses_same_key_without_calling_encoder(tmp_path):
    images, ids = scene()
    enc = CountingClip(HIER)
    first = build_pyr(tmp_path, images, ids, enc, FRACS, batch_size=16, progress=False)
    assert enc.calls > 0
    enc2 = CountingClip(HIER)
    second = build_pyr(tmp_path, images, ids, enc2, FRACS, progress=False)
    assert enc2.calls == 0
    assert np.array_equal(np.asarray(first.features), np.asarray(second.features))
    assert second.features.dtype == np.float16


@pytest.mark.parametrize("change", ["image", "encoder", "ids"])
def test_cache_changed_key_recomputes_and_says_why(tmp_path, caplog, change):
    images, ids = scene()
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    fracs, labels = FRACS, LABELS
    if change == "image":
        images = images.clone()
        images[1, 0, 0, 0] += 0.01
    elif change == "encoder":
        labels = {**LABELS, 3: "green book"}
    else:
        ids = ids.clone()
        ids[0, 0, 0] = 3
    enc = CountingClip(flat_hierarchy(labels))
    with caplog.at_level(logging.INFO, logger="lerf.encoders.cache"):
        pyr = build_pyr(tmp_path, images, ids, enc, fracs, progress=False)
    assert enc.calls > 0 and pyr.crop_fracs == fracs
    assert "stale" in caplog.text and "Changed: key." in caplog.text


def test_pyramids_of_other_crop_grids_are_other_files(tmp_path):
    """A sweep's single-scale row must not replace the default pyramid (nor race it in parallel)."""
    images, ids = scene()
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    single = CountingClip(HIER)
    build_pyr(tmp_path, images, ids, single, [0.25], progress=False)
    assert single.calls > 0
    assert len(list(tmp_path.glob("clip_pyramid_reference_clip_128_*.npy"))) == 2
    again = CountingClip(HIER)  # the default grid is still cached, and so is the single-scale one
    build_pyr(tmp_path, images, ids, again, FRACS, progress=False)
    build_pyr(tmp_path, images, ids, again, [0.25], progress=False)
    assert again.calls == 0
    assert cache_mod.clip_cache_stem("x", FRACS, 0.5) != cache_mod.clip_cache_stem("x", FRACS, 0.4)


def test_a_pyramid_cached_under_the_old_name_is_renamed_not_rebuilt(tmp_path, caplog):
    images, ids = scene()
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    new_data, new_sidecar = cache_mod.cache_paths(tmp_path, cache_mod.clip_cache_stem("reference_clip_128", FRACS, 0.5))
    old_data, old_sidecar = cache_mod.cache_paths(tmp_path, "clip_pyramid_reference_clip_128")
    new_data.rename(old_data)
    new_sidecar.rename(old_sidecar)  # as an earlier version left it
    enc = CountingClip(HIER)
    with caplog.at_level(logging.INFO, logger="lerf.encoders.cache"):
        build_pyr(tmp_path, images, ids, enc, FRACS, progress=False)
    assert enc.calls == 0 and "renamed" in caplog.text
    assert new_data.exists() and new_sidecar.exists() and not old_data.exists() and not old_sidecar.exists()
    # an old-name cache of another grid stays where it is, untouched
    new_data.rename(old_data)
    new_sidecar.rename(old_sidecar)
    other = CountingClip(HIER)
    build_pyr(tmp_path, images, ids, other, [0.25], progress=False)
    assert other.calls > 0 and old_data.exists() and old_sidecar.exists()


def test_sidecar_absent_until_data_complete_and_crash_leaves_no_valid_cache(tmp_path):
    images, ids = scene()
    data, sidecar = cache_mod.cache_paths(tmp_path, cache_mod.clip_cache_stem("reference_clip_128", FRACS, 0.5))
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    assert data.exists() and sidecar.exists()

    seen = []
    enc = CountingClip(HIER, on_call=lambda k: seen.append(sidecar.exists()))
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.01  # a stale key: the same file is rebuilt
    build_pyr(tmp_path, changed, ids, enc, FRACS, batch_size=4, progress=False)
    assert seen and not any(seen)  # stale sidecar removed before the first crop was encoded
    assert sidecar.exists()

    def crash(k):
        if k == 3:
            raise RuntimeError("killed mid-build")
    with pytest.raises(RuntimeError, match="killed"):
        build_pyr(tmp_path, images, ids, CountingClip(HIER, on_call=crash),
                                   FRACS, batch_size=4, progress=False)
    assert not sidecar.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temp file cleaned up
    enc = CountingClip(HIER)
    build_pyr(tmp_path, images, ids, enc, FRACS, progress=False)
    assert enc.calls > 0 and sidecar.exists()


def test_truncated_data_with_sidecar_is_rebuilt(tmp_path):
    images, ids = scene()
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    data, _ = cache_mod.cache_paths(tmp_path, cache_mod.clip_cache_stem("reference_clip_128", FRACS, 0.5))
    np.save(data, np.zeros((3, 128), np.float16))
    enc = CountingClip(HIER)
    build_pyr(tmp_path, images, ids, enc, FRACS, progress=False)
    assert enc.calls > 0


def test_memmap_and_ram_loading_agree(tmp_path):
    images, ids = scene()
    build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS, progress=False)
    mm = build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS,
                                    in_memory=False, progress=False)
    ram = build_pyr(tmp_path, images, ids, CountingClip(HIER), FRACS,
                                     in_memory=True, progress=False)
    assert isinstance(mm.features, np.memmap) and not isinstance(ram.features, np.memmap)
    g = torch.Generator().manual_seed(1)
    args = (torch.randint(0, 2, (100,), generator=g), torch.rand(100, generator=g) * 32,
            torch.rand(100, generator=g) * 24, torch.rand(100, generator=g) * 0.6)
    a, b = mm.lookup(*args), ram.lookup(*args)
    assert a.dtype == torch.float32 and torch.equal(a, b)


def test_cached_pyramid_answers_object_queries(tmp_path):
    """End to end: a pixel deep inside the mug at a small scale reads back the mug's vector."""
    images, ids = scene(h=48, w=64)
    ids[:, 20:40, 36:60] = 2
    enc = ReferenceClipEncoder(HIER)
    pyr = build_pyr(tmp_path, images, ids, enc, [0.1, 0.3, 0.5], progress=False)
    out = pyr.lookup(torch.tensor([0]), torch.tensor([48.0]), torch.tensor([30.0]), torch.tensor([0.1]))
    sims = torch.nn.functional.normalize(out, dim=-1) @ enc.encode_text(list(LABELS.values())).T
    assert sims.argmax().item() == 1 and sims[0, 1] > 0.99


class PinClip:
    """The smallest CLIP stand-in, with a cache key short enough to write out below."""
    name, embed_dim, input_px, device = "pin_clip", 2, 4, torch.device("cpu")

    def cache_key(self) -> dict:
        return {"encoder": "pin_clip", "dim": 2}

    def encode_crops(self, rgb, ids=None, crop_m=None):
        return rgb.mean(dim=(2, 3))[:, :2]

    def encode_text(self, texts):
        raise NotImplementedError


def blake2b_hex(size: int, *chunks: bytes) -> str:
    h = hashlib.blake2b(digest_size=size)
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("demo", [False, True])
def test_clip_cache_key_and_file_names_are_pinned(tmp_path, demo):
    """Users' pyramids on disk stay valid only while the key and the file name are computed exactly
    as when they were written. Expected values are derived here from cache.py's rules, with
    hashlib, not from the code under test (nor copied from a run):
    - digest: BLAKE2b-128 over each stack, as "<shape tuple><torch dtype>" then each image's
      C-order bytes; an absent id mask hashes b"none"; an absent px_m hashes nothing (it came
      later, so that keys without it did not change);
    - key: FORMAT_VERSION 1, kind, the encoder's own cache_key(), image count/size/dtype,
      has_ids, crop fractions as a list of floats, stride scaler;
    - file stem: clip_pyramid_<encoder name>_<BLAKE2b-32 of the sorted-key JSON of the grid>."""
    images = (torch.arange(2 * 3 * 4 * 3) % 256).to(torch.uint8).reshape(2, 3, 4, 3)
    ids = torch.tensor([[0, 1, 1, 2]] * 3).repeat(2, 1, 1) if demo else None  # int64 (2, 3, 4)
    px_m = torch.full((2, 3, 4), 0.01) if demo else None  # float32
    inputs = PyramidInputs(images, ids, PinClip(), [0.5, 1.0], 0.5, px_m)

    stacks = [b"(2, 3, 4, 3)torch.uint8", images[0].numpy().tobytes(), images[1].numpy().tobytes()]
    if demo:
        stacks += [b"(2, 3, 4)torch.int64", ids[0].numpy().tobytes(), ids[1].numpy().tobytes(),
                   b"(2, 3, 4)torch.float32", px_m[0].numpy().tobytes(), px_m[1].numpy().tobytes()]
    else:
        stacks += [b"none"]
    expected_key = {"format_version": 1, "kind": "clip_pyramid", "encoder": {"encoder": "pin_clip", "dim": 2},
                    "images": {"count": 2, "height": 3, "width": 4, "dtype": "torch.uint8", "has_ids": demo,
                               "digest": blake2b_hex(16, *stacks)},
                    "crop_fracs": [0.5, 1.0], "stride_scaler": 0.5}
    stem = "clip_pyramid_pin_clip_" + blake2b_hex(4, b'{"crop_fracs": [0.5, 1.0], "stride_scaler": 0.5}')

    assert cache_mod.clip_cache_key(inputs) == expected_key
    assert cache_mod.clip_cache_paths(tmp_path, inputs) == (tmp_path / f"{stem}.npy", tmp_path / f"{stem}.json")
    load_or_build_clip_pyramid(tmp_path, inputs, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.json", f"{stem}.npy"]
    assert json.loads((tmp_path / f"{stem}.json").read_text())["key"] == expected_key
    assert cache_mod.clip_cache_current(tmp_path, inputs)


def test_dino_cache_roundtrip(tmp_path):
    images, ids = scene()
    enc = ReferenceDinoEncoder(dim=8, stride_px=4)
    a = load_or_build_dino_maps(tmp_path, images, ids, enc, progress=False)
    side = json.loads((tmp_path / "dino_maps_reference_dino_8.json").read_text())
    assert side["stride_px"] == [4.0, 4.0] and side["shape"] == [2, 6, 8, 8]
    b = load_or_build_dino_maps(tmp_path, images, ids, enc, in_memory=False, progress=False)
    assert isinstance(b.features, np.memmap) and np.array_equal(a.features, b.features)


# ---------------------------------------------------------------- factory

def test_factory_kinds():
    assert isinstance(build_clip_encoder("reference", hierarchy=HIER, dim=16), ReferenceClipEncoder)
    assert isinstance(build_dino_encoder("reference", dim=8), ReferenceDinoEncoder)
    with pytest.raises(ValueError, match="openclip"):
        build_clip_encoder("clip-vit")
    with pytest.raises(ValueError, match="dino"):
        build_dino_encoder("dinov2")


# ---------------------------------------------------------------- real encoders, offline

def test_openclip_missing_checkpoint_names_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        build_clip_encoder("openclip", checkpoint=str(tmp_path / "nope.bin"))
    msg = str(err.value)
    for needle in ("open_clip_pytorch_model.bin", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
                   "encoder.clip_checkpoint", "nope.bin"):
        assert needle in msg


def test_openclip_failed_download_names_the_file(monkeypatch):
    from lerf.encoders import openclip

    def no_network(*a, **kw):
        raise ConnectionError("offline")
    monkeypatch.setattr(openclip, "download_weights", no_network)
    with pytest.raises(WeightsNotFoundError, match="open_clip_pytorch_model.bin") as err:
        openclip.OpenClipEncoder()
    assert "download failed" in str(err.value) and "encoder.clip_checkpoint" in str(err.value)


def test_dino_missing_weights_names_the_file(tmp_path, monkeypatch):
    from lerf.encoders import dino
    with pytest.raises(WeightsNotFoundError) as err:
        build_dino_encoder("dino", checkpoint=str(tmp_path / "nope.pth"))
    for needle in ("model.safetensors", "timm/vit_small_patch8_224.dino",
                   "dino_deitsmall8_pretrain.pth", "encoder.dino_checkpoint"):
        assert needle in str(err.value)

    def no_network(*a, **kw):
        raise ConnectionError("offline")
    monkeypatch.setattr(dino, "download_weights", no_network)
    with pytest.raises(WeightsNotFoundError, match="download failed"):
        dino.DinoEncoder()


@pytest.fixture(scope="module")
def random_clip():
    return build_clip_encoder("openclip", allow_random_weights=True)


def test_openclip_random_weights_shapes(random_clip, caplog):
    enc = random_clip
    assert enc.embed_dim == 512 and enc.input_px == 224
    img = enc.encode_crops(torch.rand(2, 3, 40, 40))  # resized to 224 inside
    txt = enc.encode_text(["red mug", "object"])
    for x in (img, txt):
        assert x.shape == (2, 512) and x.dtype == torch.float32
        assert torch.allclose(x.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert enc.cache_key()["weights"].startswith("random")


def test_openclip_checkpoint_file_loads_offline(random_clip, tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(random_clip.model.state_dict(), path)
    enc = build_clip_encoder("openclip", checkpoint=str(path))
    assert enc.cache_key()["weights"].startswith("sha256:")
    assert torch.allclose(enc.encode_text(["red mug"]), random_clip.encode_text(["red mug"]), atol=1e-5)


def test_dino_random_weights_dense_shapes_any_size():
    enc = build_dino_encoder("dino", allow_random_weights=True, load_size=None)
    for h, w in [(40, 56), (37, 61)]:
        f = enc.encode_dense(torch.rand(1, 3, h, w))
        gh, gw = enc.grid_hw(h, w)
        assert f.shape == (1, gh, gw, 384) and f.dtype == torch.float32
        sv, su = enc.stride_px(h, w)
        assert abs(sv * gh - h) < 1e-9 and abs(su * gw - w) < 1e-9
    assert enc.grid_hw(40, 56) == (5, 7)
    enc.load_size = 32  # shorter side -> 32 px: 4 patches of 8 px
    assert enc.encode_dense(torch.rand(1, 3, 40, 80)).shape == (1, 4, 8, 384)


def test_dino_checkpoint_formats_load_strictly(tmp_path):
    from lerf.encoders import dino
    ref = dino.DinoEncoder(allow_random_weights=True, load_size=None)
    sd = ref.net.state_dict()
    torch.save({"teacher": {f"backbone.{k}": v for k, v in sd.items()}}, tmp_path / "dino.pth")
    enc = dino.DinoEncoder(checkpoint=str(tmp_path / "dino.pth"), load_size=None)
    x = torch.rand(1, 3, 32, 40)
    assert torch.allclose(enc.encode_dense(x), ref.encode_dense(x), atol=1e-5)
    del sd["blocks.3.mlp.fc1.weight"]
    torch.save(sd, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        dino.DinoEncoder(checkpoint=str(tmp_path / "broken.pth"))
