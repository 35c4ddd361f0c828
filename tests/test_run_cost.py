"""What a run will cost, said before it starts (lerf/train/cost.py), and the feature cache's
clean-up of temporaries left by killed builds (lerf/data/atomic.py, lerf/encoders/cache.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lerf.apps.cli import is_user_error
from lerf.config import ModelConfig
from lerf.data.atomic import pid_alive, remove_stale_temporaries, temp_owner, temp_path
from lerf.encoders.cache import RAM_THRESHOLD_BYTES, load_or_build_clip_pyramid
from lerf.encoders.pyramid import PyramidInputs
from lerf.train.cost import (CUDA_CONTEXT_BYTES, ResourceError, activation_bytes, available_ram_bytes, cache_bytes, check_resources,
                             estimate_run_cost, free_disk_bytes)

# Two 48 x 64 images, one level at 100 % of the height, stride scaler 0.5: 48 px crops every
# 24 px -> columns at 0 and 16 (2 crops), one row -> 4 rows of 512 fp16 = 4096 bytes + the
# 128-byte .npy header. DINO: a 6 x 8 grid of 384 fp16 -> 2 * 6 * 8 * 384 * 2 + 128.
TINY = dict(n_images=2, height=48, width=64, crop_fracs=[1.0], stride_scaler=0.5, clip_dim=512,
            dino_shape=(2, 6, 8, 384))
CLIP_BYTES, DINO_BYTES = 4 * 512 * 2 + 128, 2 * 6 * 8 * 384 * 2 + 128


def tiny_cost(device_type="cpu", cached=(False, False), model_params=1000, encoder_bytes=5000):
    return estimate_run_cost(**TINY, encoder_bytes=encoder_bytes, model_params=model_params, model=ModelConfig(),
                             rays_per_batch=64, device_type=device_type, cached=cached)


def test_cache_bytes_by_hand():
    assert cache_bytes(**TINY) == (CLIP_BYTES, DINO_BYTES)
    assert cache_bytes(**{**TINY, "dino_shape": None}) == (CLIP_BYTES, 0)


def test_estimate_by_hand():
    cost = tiny_cost()
    assert cost.image_bytes == 2 * 48 * 64 * 3
    assert cost.disk_to_write_bytes == CLIP_BYTES + DINO_BYTES
    assert cost.cache_ram_bytes == CLIP_BYTES + DINO_BYTES  # small caches are read into RAM
    # weight, gradient, two Adam moments, the hash grid's transient table gradient, and one
    # batch's activations (on the CPU, in RAM)
    state = 1000 * 20 + activation_bytes(ModelConfig(), 64, 512, 384)
    assert cost.train_state_ram_bytes == state
    assert cost.ram_bytes == 2 * 48 * 64 * 3 + 5000 + CLIP_BYTES + DINO_BYTES + state
    assert cost.ram_to_come_bytes == CLIP_BYTES + DINO_BYTES + state
    assert cost.gpu_bytes is None
    # A cache already on disk with the same key costs no disk.
    assert tiny_cost(cached=(True, False)).disk_to_write_bytes == DINO_BYTES
    assert tiny_cost(cached=(True, True)).disk_to_write_bytes == 0


def test_cuda_estimate_holds_caches_encoders_state_and_activations():
    cost = tiny_cost("cuda")
    assert cost.train_state_ram_bytes == 0  # the training state lives on the GPU
    assert cost.gpu_bytes == (CUDA_CONTEXT_BYTES + CLIP_BYTES + DINO_BYTES + 5000 + 20000
                              + activation_bytes(ModelConfig(), 64, 512, 384))
    # Activations grow with the batch.
    assert activation_bytes(ModelConfig(), 128, 512, 384) == 2 * activation_bytes(ModelConfig(), 64, 512, 384)


def test_a_cache_over_the_ram_threshold_is_memory_mapped_not_counted():
    n = RAM_THRESHOLD_BYTES // (512 * 2) + 1  # rows of one-crop images past the threshold
    cost = estimate_run_cost(n, 48, 48, [1.0], 0.5, 512, None, 0, 0, ModelConfig(), 64, "cpu")
    assert cost.clip_cache_bytes > RAM_THRESHOLD_BYTES and cost.cache_ram_bytes == 0


def test_refuses_too_little_disk_in_one_line(tmp_path):
    cost = tiny_cost()
    with pytest.raises(ResourceError) as err:
        check_resources(cost, tmp_path, free_disk=CLIP_BYTES, free_ram=10**12)
    text = str(err.value)
    assert "disk" in text and str(tmp_path) in text and "Nothing was written" in text and "\n" not in text
    assert is_user_error(err.value)
    check_resources(cost, tmp_path, free_disk=CLIP_BYTES + DINO_BYTES, free_ram=10**12)  # just enough


def test_refuses_too_little_ram(tmp_path):
    cost = tiny_cost()
    with pytest.raises(ResourceError, match="not enough RAM"):
        check_resources(cost, tmp_path, free_disk=10**12, free_ram=cost.ram_to_come_bytes - 1)
    check_resources(cost, tmp_path, free_disk=10**12, free_ram=cost.ram_to_come_bytes)


def test_system_readings(tmp_path):
    assert available_ram_bytes() > 0
    assert free_disk_bytes(tmp_path / "not" / "yet") == free_disk_bytes(tmp_path) > 0


# ---------------------------------------------------------------- stale temporaries

def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


def temporary(folder, name: str, pid: int, age_s: float):
    path = folder / f".{name}.tmp-{pid}.npy"
    path.write_bytes(b"\0" * 1000)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_temp_names_carry_their_writer(tmp_path):
    assert temp_owner(temp_path(tmp_path / "x.npy")) == os.getpid()
    assert temp_owner(tmp_path / "x.npy") is None and temp_owner(tmp_path / ".x.tmp-12") == 12


def test_only_a_dead_writers_old_temporary_is_removed(tmp_path):
    dead = dead_pid()
    stale = temporary(tmp_path, "clip_pyramid_a", dead, age_s=3600)
    mine = temporary(tmp_path, "clip_pyramid_b", os.getpid(), age_s=3600)  # a live writer: kept
    fresh = temporary(tmp_path, "dino_maps_c", dead, age_s=0)  # may be another machine's live write
    cache = tmp_path / "dino_maps_c.npy"
    cache.write_bytes(b"data")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and mine.exists() and fresh.exists() and cache.exists()
    assert remove_stale_temporaries(tmp_path / "absent") == []


class MeanColour:
    """A 3-d 'CLIP' encoder: the crop's mean colour (enough to build a pyramid cache)."""
    name, embed_dim, input_px, device = "mean_colour", 3, 4, torch.device("cpu")

    def cache_key(self):
        return {"encoder": "mean_colour"}

    def encode_crops(self, rgb, ids=None):
        return rgb.mean(dim=(2, 3))

    def encode_text(self, texts):
        raise NotImplementedError


def test_opening_the_cache_removes_a_killed_builds_temporary(tmp_path):
    stale = temporary(tmp_path, "clip_pyramid_mean_colour_0123abcd", dead_pid(), age_s=3600)
    images = torch.rand(2, 16, 16, 3)
    pyramid = load_or_build_clip_pyramid(tmp_path, PyramidInputs(images, None, MeanColour(), [1.0]), progress=False)
    assert not stale.exists()
    assert np.asarray(pyramid.features).shape == (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in tmp_path.glob("clip_pyramid_mean_colour_*"))  # the cache and its sidecar, nothing else
