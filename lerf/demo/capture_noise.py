"""Capture noise for the demo scene: what a handheld phone capture adds to clean renders.

`scene=demo scene.capture_noise=true` trains on a copy of the clean demo scene,
`<clean dir>_noise_e<held_out_every>`, made once by `ensure_noisy_scene`; the clean scene and its
generator are left as they are. On every *training* frame:
- exposure and white balance (auto exposure, auto white balance): the image is multiplied by
  2^e, e ~ U(-EXPOSURE_STOPS, EXPOSURE_STOPS), times a per-channel gain 1 + U(-WHITE_BALANCE,
  WHITE_BALANCE), then rounded and clipped to 8 bits;
- pose noise (a slightly wrong SfM pose): the transform_matrix written to transforms.json is
  rotated by ROTATION_DEG about a random axis through the camera centre, and the centre moved
  TRANSLATION_M (metres, the demo's units) in a random direction.
The gains apply to surface pixels only (object id != background id, from the frame's id image):
the demo's backdrop is not geometry but the renderer's constant background colour, which the
model composites after its colour MLP (transforms.json "background_color"). A jittered backdrop
could only be faked with floaters in front of it, which no appearance embedding fixes; in a real
capture the backdrop is geometry and goes through the colour MLP like everything else.
Held-out frames (k % held_out_every == 0, the loader's split) keep their exact images and poses:
they are the ground truth that novel views are scored against. Each noisy frame records what was
done to it under "capture_noise" (gains and its true pose), so pose refinement can be scored.
All draws come from one RNG seeded by the scene seed.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image

from lerf.data.atomic import build_directory_once
from lerf.data.nerfstudio import SceneFormatError

log = logging.getLogger(__name__)

EXPOSURE_STOPS = 0.4  # ±0.4 stops: a 0.76x .. 1.32x brightness gain
WHITE_BALANCE = 0.06  # ±6 % per colour channel
ROTATION_DEG = 0.5
TRANSLATION_M = 0.01
SEED_OFFSET = 15  # the noise stream differs from any stream the scene generator draws with its seed


def random_unit(rng: np.random.Generator) -> Float[np.ndarray, "3"]:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def axis_angle(axis: Float[np.ndarray, "3"], angle_rad: float) -> Float[np.ndarray, "3 3"]:
    """Rotation by `angle_rad` about the unit `axis` (Rodrigues).

    Example: axis (0, 0, 1), angle π/2 -> [[0, -1, 0], [1, 0, 0], [0, 0, 1]].
    """
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def perturb_pose(c2w: Float[np.ndarray, "4 4"], rng: np.random.Generator) -> Float[np.ndarray, "4 4"]:
    """c2w turned by ROTATION_DEG about its own centre and moved by TRANSLATION_M, random directions."""
    out = np.array(c2w, dtype=np.float64)
    out[:3, :3] = axis_angle(random_unit(rng), np.radians(ROTATION_DEG)) @ out[:3, :3]
    out[:3, 3] += TRANSLATION_M * random_unit(rng)
    return out


def draw_gains(rng: np.random.Generator) -> Float[np.ndarray, "3"]:
    """Per-channel gain of one view: exposure times white balance."""
    exposure = 2.0 ** rng.uniform(-EXPOSURE_STOPS, EXPOSURE_STOPS)
    return exposure * (1 + rng.uniform(-WHITE_BALANCE, WHITE_BALANCE, 3))


def apply_gains(image: UInt8[np.ndarray, "h w 3"], gains: Float[np.ndarray, "3"]) -> UInt8[np.ndarray, "h w 3"]:
    """Example: a pixel (100, 200, 250) with gains (1.1, 1.1, 1.1) -> (110, 220, 255): clipped."""
    return np.clip(np.round(image.astype(np.float64) * gains), 0, 255).astype(np.uint8)


def _jitter_image(root: Path, frame: dict, gains: Float[np.ndarray, "3"], background_id: int) -> None:
    """Apply `gains` to the frame's surface pixels (see the module docstring), in place."""
    image_path = root / frame["file_path"]
    image = np.asarray(Image.open(image_path).convert("RGB"))
    surface = np.asarray(Image.open(root / frame["mask_id_path"])) != background_id
    Image.fromarray(np.where(surface[..., None], apply_gains(image, gains), image)).save(image_path)


def add_capture_noise(root: Path, seed: int, held_out_every: int) -> None:
    """Jitter the images and poses of the training frames of the scene in `root`, in place."""
    path = root / "transforms.json"
    meta = json.loads(path.read_text())
    background_id = int(json.loads((root / "labels.json").read_text()).get("background_id", 0))
    rng = np.random.default_rng([seed, SEED_OFFSET])
    for k, frame in enumerate(meta["frames"]):
        if held_out_every > 0 and k % held_out_every == 0:
            continue
        gains = draw_gains(rng)
        true_c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        _jitter_image(root, frame, gains, background_id)
        frame["transform_matrix"] = perturb_pose(true_c2w, rng).tolist()
        frame["capture_noise"] = {"gains": gains.tolist(), "true_transform_matrix": true_c2w.tolist()}
    meta["capture_noise"] = {"seed": seed, "held_out_every": held_out_every, "exposure_stops": EXPOSURE_STOPS,
                             "white_balance": WHITE_BALANCE, "rotation_deg": ROTATION_DEG,
                             "translation_m": TRANSLATION_M}
    path.write_text(json.dumps(meta, indent=1))  # last: its "capture_noise" key marks the copy complete


def noisy_scene_dir(clean: Path, held_out_every: int) -> Path:
    return clean.with_name(f"{clean.name}_noise_e{held_out_every}")


def _is_noisy(root: Path) -> bool:
    try:
        return "capture_noise" in json.loads((root / "transforms.json").read_text())
    except (OSError, ValueError):
        return False


def ensure_noisy_scene(clean: Path, seed: int, held_out_every: int, generate: bool = True) -> Path:
    """The noisy copy of the clean scene in `clean`, made first when missing (unless not `generate`).

    Made once, crash- and race-safe (`lerf.data.atomic.build_directory_once`).
    """
    final = noisy_scene_dir(clean, held_out_every)
    if not generate and not _is_noisy(final):
        raise SceneFormatError(f"the capture-noise copy {final} of the demo scene is missing (deleted since "
                                "training?); train once with scene.capture_noise=true to remake it")

    def build(path: Path) -> None:
        log.info("adding capture noise to a copy of %s at %s", clean, final)
        shutil.copytree(clean, path)
        add_capture_noise(path, seed, held_out_every)

    return build_directory_once(final, _is_noisy, build)
