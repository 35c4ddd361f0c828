"""Typed schemas for every config group: the one home of every setting.

`conf/` holds the presets (YAML files per group); Hydra merges them into these dataclasses, so a
typo or a wrong type in a preset or on the command line is an error, not a silent new key.
Groups mirror the code: scene → lerf.data, model → lerf.fields/lerf.render, encoder →
lerf.encoders, optim → lerf.train.optim, trainer → lerf.train, relevancy → lerf.query.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore


def at_least(group: str, cfg: Any, minimum: int | float, *names: str) -> None:
    """Reject a setting below `minimum` at start-up, e.g. "trainer.checkpoint_every must be >= 1, got 0"."""
    for name in names:
        value = getattr(cfg, name)
        if value < minimum:
            raise ValueError(f"{group}.{name} must be >= {minimum}, got {value}")


@dataclass
class SceneConfig:
    name: str = "demo"
    # "demo": generate the synthetic scene into cache_dir; "nerfstudio": read `path`
    # (transforms.json); "colmap": read `path` (images/ + sparse/0, lerf/data/colmap.py).
    kind: str = "demo"
    path: Optional[str] = None
    # LabelMe-style evaluation labels (frame_XXXXX.json); null: the scene's own labels/ if any.
    labels_dir: Optional[str] = None
    downscale: int = 1  # uses images_{2,4,8}/ when present, else resizes on load
    # Frame i is held out for evaluation when i % eval_every == 0; 0 trains on every frame (the
    # authors' practice for final models) and leaves no view to evaluate.
    eval_every: int = 8
    # Demo-scene generation (kind=demo only).
    seed: int = 0
    num_views: int = 48
    width: int = 128
    height: int = 128
    cache_dir: str = ".cache/lerf"
    # What a handheld capture adds (lerf.demo.capture_noise): per-view exposure and white-balance
    # jitter and small pose noise on the training frames; held-out frames stay exact.
    capture_noise: bool = False
    # Pose normalisation: centre ("focus" = point nearest all optical axes, "poses" = mean camera
    # position, "none") then scale so every camera lies in [-1, 1]^3; the scale is kept so world
    # units (metres on LERF captures) can be recovered.
    center: str = "poses"
    # Bounded scenes live in the box [-bound, bound]^3 (normalised units); unbounded ones are
    # contracted (mip-NeRF 360) so everything fits the hash grid.
    bounded: bool = False
    bound: float = 1.0
    near: float = 0.05  # normalised units, unbounded scenes only
    far: float = 1000.0
    # A constant background colour for the renderer; null = read from transforms.json if given,
    # else none (the model learns whatever it sees).
    background_color: Optional[List[float]] = None
    # Metres per unit of the poses in transforms.json. LERF's 0-2 m scale search assumes metric
    # poses: 1 for Polycam, Record3D and the LERF captures; for COLMAP (arbitrary units) set it to
    # a known length in metres divided by the same length in pose units.
    metres_per_unit: float = 1.0

    def __post_init__(self) -> None:
        at_least("scene", self, 1, "downscale", "num_views", "width", "height")
        at_least("scene", self, 0, "eval_every")


@dataclass
class GridConfig:
    num_levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048


@dataclass
class ProposalConfig:
    grid: GridConfig = field(default_factory=lambda: GridConfig(
        num_levels=5, features_per_level=2, log2_hashmap_size=17, base_resolution=16, max_resolution=128))
    hidden_dim: int = 16


@dataclass
class LanguageConfig:
    enabled: bool = True
    # One or more grids (the authors' code uses two); their features are concatenated.
    grids: List[GridConfig] = field(default_factory=lambda: [GridConfig(
        num_levels=32, features_per_level=8, log2_hashmap_size=21, base_resolution=16, max_resolution=512)])
    bottleneck_dim: int = 256
    hidden_dim: int = 256
    clip_layers: int = 3
    dino_layers: int = 2
    dino_enabled: bool = True
    # LERF §3.3: the language field is read at the highest-weight samples, weights detached.
    samples_per_ray: int = 24
    # The authors' field normalises each sample's CLIP output before the weighted sum (the ray is
    # normalised again after); false composites raw outputs (ablation).
    normalize_samples: bool = True
    # How a training ray's crop becomes the CLIP head's scale input (lerf/data/scale_modes.py):
    # "depth" = crop_px / f × each sample's own z-depth, in metres (LERF §3.1, the seed);
    # "authors" = kerrj/lerf's pyramid position × H · distance / fy (`experiment=authors_scale`);
    # "no_depth" = × nominal_depth_m for every pixel (ablation); "none" = no scale (ablation).
    scale_mode: str = "depth"
    # Contraction of the language field's hash-grid coordinates in unbounded scenes: "l2" (the
    # authors' LERFField: nerfstudio SceneContraction() defaults to the L2 norm of mip-NeRF 360) or
    # "linf" (nerfacto's, which the NeRF keeps). Bounded scenes are a box: no contraction.
    contraction: str = "l2"
    clip_loss: str = "huber"  # huber | cosine
    huber_delta: float = 1.25
    clip_weight: float = 0.1
    dino_weight: float = 1.0
    nominal_depth_m: float = 1.0  # scale_mode=no_depth only
    # Rays of each batch that the language losses read, spread evenly over the batch (so a
    # rarity batch keeps its mix); 0 = all (LERF). Ours, for CPU presets: the language field is
    # over half of a CPU step, and it gains little from more rays per step (docs/history.md, "thin parts").
    rays_per_batch: int = 0

    def __post_init__(self) -> None:
        if self.rays_per_batch < 0:
            raise ValueError(f"model.language.rays_per_batch must be >= 0 (0 = every ray), got {self.rays_per_batch}")
        if self.contraction not in ("l2", "linf"):
            raise ValueError(f"model.language.contraction must be l2 or linf, got '{self.contraction}'")


@dataclass
class ModelConfig:
    name: str = "nerfacto"
    backend: str = "auto"  # hash grid backend: auto | torch | triton | tcnn
    grid: GridConfig = field(default_factory=GridConfig)
    hidden_dim: int = 64
    geo_feat_dim: int = 15
    color_hidden_dim: int = 64
    sh_degree: int = 4
    proposals: List[ProposalConfig] = field(default_factory=lambda: [
        ProposalConfig(),
        ProposalConfig(grid=GridConfig(num_levels=5, features_per_level=2, log2_hashmap_size=17,
                                       base_resolution=16, max_resolution=256)),
    ])
    # Samples per ray at each proposal level, then for the NeRF (nerfacto: 256 -> 96 -> 48).
    proposal_samples: List[int] = field(default_factory=lambda: [256, 96])
    nerf_samples: int = 48
    # nerfacto anneals proposal weights w^a, a going 0 -> 1 over this many steps (slope 10).
    proposal_anneal_steps: int = 1000
    interlevel_weight: float = 1.0
    distortion_weight: float = 0.002
    # nerfacto's per-image appearance embedding (NeRF-W's appearance latent): one learned vector
    # per training frame, an input of the colour MLP only (never of the language field: meaning
    # must not depend on exposure). Any other view (held-out, camera path) uses `appearance_eval`:
    # "mean" of the training embeddings (nerfstudio's nerfacto default,
    # use_average_appearance_embedding=True) or "zeros". nerfacto: 32 dimensions.
    appearance: bool = True
    appearance_dim: int = 32
    appearance_eval: str = "mean"
    # Camera pose refinement (nerfacto, and the authors' LERF config): a learned SO3xR3 correction
    # per training frame, with its own optimiser settings (optim.camera). Held-out frames keep
    # their poses; the refined poses are saved in the checkpoint and used by query and eval.
    pose_refinement: bool = True
    # Ours: remove the corrections' common rigid motion (the gauge the photometric loss cannot
    # see), so the scene stays in the given poses' frame, where held-out cameras live
    # (lerf/data/pose_refinement.py). false: free corrections, as nerfstudio.
    pose_pin_gauge: bool = True
    language: LanguageConfig = field(default_factory=LanguageConfig)


@dataclass
class EncoderConfig:
    clip: str = "openclip"  # openclip | reference
    clip_model: str = "ViT-B-16"
    clip_pretrained: str = "laion2b_s34b_b88k"
    clip_checkpoint: Optional[str] = None  # a local weights file: loads offline
    # Side of the square the CLIP model sees; null = the model's own (224 px for ViT-B-16). Another
    # value resizes its position embedding (open_clip's force_image_size): for CI-sized runs of
    # the real path (tests/test_real_path.py), not for results.
    clip_input_px: Optional[int] = None
    dino: str = "dino"  # dino | reference
    dino_model: str = "vit_small_patch8_224.dino"
    dino_checkpoint: Optional[str] = None
    # Shorter image side fed to DINO (the authors' dino_load_size = 500); null keeps the image's.
    dino_load_size: Optional[int] = 500
    reference_clip_dim: int = 128
    reference_dino_dim: int = 64
    reference_dino_stride: int = 4
    # LERF §3.1: crops from 5% to 50% of the image height over 7 levels.
    pyramid_min_frac: float = 0.05
    pyramid_max_frac: float = 0.5
    pyramid_levels: int = 7  # equal min and max fractions mean a single-scale pyramid (ablation)
    # The authors' `_stride_scaler`: crop stride as a fraction of the crop side, from 1.0 at 5% of
    # the image height to this value at 15% and above (lerf.encoders.pyramid.stride_ratio).
    pyramid_stride_scaler: float = 0.5
    batch_size: int = 64
    cache_dir: str = ".cache/lerf/features"
    allow_random_weights: bool = False  # tests and benchmarks only


@dataclass
class AdamConfig:
    lr: float = 1e-2
    lr_final: float = 1e-3
    decay_steps: int = 5000  # exponential decay over these steps, then held
    weight_decay: float = 1e-9
    eps: float = 1e-15
    warmup_steps: int = 0  # lr ramps linearly from 0 over these first steps (0: no ramp)


@dataclass
class OptimConfig(AdamConfig):
    """The networks' Adam (the fields above), and the camera pose corrections' own."""

    # nerfstudio's nerfacto (and the authors' LERF) camera optimiser: Adam lr 6e-4, eps 1e-8,
    # weight decay 1e-2 (it keeps the corrections small), exponential decay to 6e-6 over 200k steps.
    # Plus a warm-up nerfstudio does not have: Adam moves every parameter by about lr per step
    # whatever the gradient's size, so from step 0 the corrections of a still-random field walk
    # ~0.8 deg / 1.4 cm in 25 steps and never come back (measured on the noisy demo, README).
    camera: AdamConfig = field(default_factory=lambda: AdamConfig(
        lr=6e-4, lr_final=6e-6, decay_steps=200000, weight_decay=1e-2, eps=1e-8, warmup_steps=500))

    def __post_init__(self) -> None:
        at_least("optim", self, 1, "decay_steps")
        at_least("optim", self, 0, "lr", "lr_final", "weight_decay")


@dataclass
class TrainerConfig:
    max_steps: int = 30000
    rays_per_batch: int = 4096
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    log_every: int = 50
    image_every: int = 1000  # TensorBoard eval images
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # the newest K checkpoints are kept; loading falls back to an older one
    eval_chunk: int = 4096  # rays per chunk when rendering full images
    eval_at_end: bool = True
    # Also localization + segmentation at the end, when the scene has labels/ (the demo does).
    eval_language: bool = True
    progress: bool = True
    # Which pixels a batch reads: "uniform" (LERF) or "rarity" (ours, lerf/train/rarity.py):
    # `rarity_share` of each batch spread evenly over `rarity_clusters` appearance clusters of the
    # CLIP pyramid's finest crops, so that rare parts are read as often as common surfaces.
    ray_sampling: str = "uniform"
    rarity_share: float = 0.5
    rarity_clusters: int = 32
    # Weight each ray's RGB, interlevel and distortion losses by uniform / rarity-mixture draw
    # probability, so the radiance field and its proposal networks fit what uniform rays would ask
    # (in expectation) and only the language losses see the emphasis. false: every ray counts once
    # (runs trained before it existed; lerf/model/checkpoint.py migrates their configs). No effect with
    # uniform rays.
    rarity_unbiased_nerf: bool = True

    def __post_init__(self) -> None:
        if self.ray_sampling not in ("uniform", "rarity"):
            raise ValueError(f"trainer.ray_sampling must be uniform or rarity, got '{self.ray_sampling}'")
        if not 0.0 <= self.rarity_share <= 1.0:
            raise ValueError(f"trainer.rarity_share must lie in [0, 1], got {self.rarity_share}")
        # Zero or negative values used to crash mid-run (division by zero, empty batches).
        at_least("trainer", self, 1, "max_steps", "rays_per_batch", "log_every", "checkpoint_every", "eval_chunk",
                 "keep_checkpoints", "rarity_clusters")
        at_least("trainer", self, 0, "image_every", "num_threads")


@dataclass
class RelevancyConfig:
    # LERF §3.4: relevancy = min over canonical phrases of the pairwise softmax.
    canonical_phrases: List[str] = field(default_factory=lambda: ["object", "things", "stuff", "texture"])
    # How the pairwise softmaxes against the canonical phrases combine: "min" (LERF §3.4, the
    # hardest negative) or "max" (the sensitivity row `experiment=max_canonical`).
    canonical_reduce: str = "min"
    temperature: float = 10.0  # the softmax multiplies cosine similarities by this
    # LERF §3.4: the scale is searched over 30 values in 0-2 m (in the unit of
    # model.language.scale_mode: metres, or the authors' units for scale_mode=authors, where
    # their code searches 0-1.5; `experiment=authors_scale`).
    scale_min_m: float = 0.0
    scale_max_m: float = 2.0
    num_scales: int = 30
    # LERF §3.4 visibility filtering: a sample that fewer than `visibility_min_views` training
    # views saw adds no relevancy (2D maps, evaluation, videos, viewer, .ply). The grid is built
    # once after training (cells per axis over the hash grid's unit cube; depths rendered at most
    # visibility_max_px on the long side). false: the ablation without the filter.
    visibility_filter: bool = True
    visibility_min_views: int = 5
    visibility_resolution: int = 64
    visibility_max_px: int = 128
    # Ours (neither the paper nor the authors' code say how the filter enters a 2D map): a ray's
    # relevancy is multiplied by the share of its language weight that the filter kept (sum of
    # visible sample weights / sum of all). Without it, a ray whose samples are mostly unseen got
    # its embedding renormalised from the small seen remainder and could score as high as any
    # surface (on the demo such rays at image borders and behind the table edge took the peak of
    # "place setting" and "white plate"). Unfiltered rays keep LERF's relevancy exactly.
    visible_share: bool = True
    tensorboard_prompt: Optional[str] = None  # relevancy image in TensorBoard for this prompt

    def __post_init__(self) -> None:
        if self.canonical_reduce not in ("min", "max"):
            raise ValueError(f"relevancy.canonical_reduce must be min or max, got '{self.canonical_reduce}'")


@dataclass
class TrainConfig:
    scene: SceneConfig = field(default_factory=SceneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    relevancy: RelevancyConfig = field(default_factory=RelevancyConfig)
    experiment: Optional[str] = None
    resume: Optional[str] = None  # a run dir: continue its latest checkpoint, with its own config
    debug: bool = False  # entry points print full tracebacks (also HYDRA_FULL_ERROR=1)
    # Filled in at run time (never set by hand): what `auto` choices resolved to.
    resolved: Any = field(default_factory=dict)


def register_configs() -> None:
    """Register the schemas so conf/*.yaml can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="scene", name="scene_schema", node=SceneConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="encoder", name="encoder_schema", node=EncoderConfig)
    cs.store(group="optim", name="optim_schema", node=OptimConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    from omegaconf import OmegaConf

    # conf/train.yaml: with resume=<run>, Hydra works in that run dir and writes no .hydra/ there
    # (the run keeps its own config; no stray outputs/<date>/ folder).
    if not OmegaConf.has_resolver("lerf.resume_or"):
        OmegaConf.register_new_resolver("lerf.resume_or", lambda resume, default: resume or default)
        OmegaConf.register_new_resolver("lerf.unless_resume", lambda resume, value: None if resume else value)


GROUPS = ("scene", "model", "encoder", "optim", "trainer", "relevancy", "experiment")


def apply_overrides(cfg: TrainConfig, overrides: Sequence[str]) -> tuple[TrainConfig, dict[str, tuple]]:
    """A resumed run's own config, changed only by the `key=value` overrides of its command line.

    Returns the new config and {key: (old, new)} for every key that changed. Group choices
    (`trainer=demo`) and `model.*` keys (the weights' shapes) are refused: they would make a
    different run. Example: ["resume=/r", "trainer.max_steps=5000"] -> {"trainer.max_steps": (100, 5000)}.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    plain = OmegaConf.create(to_plain(cfg))
    changes = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group.lstrip("+")
        if key in ("resume", "resolved") or key.startswith("hydra"):
            continue
        if key != "debug" and ("." not in key or key.split(".")[0] not in GROUPS or key.startswith("model.")):
            raise ValueError(f"resume keeps the run's own config: '{override.input_line}' cannot change it "
                             "(only settings such as trainer.max_steps=...; start a new run for another model, "
                             "scene or preset)")
        old = OmegaConf.select(plain, key, default=None)
        OmegaConf.update(plain, key, override.value(), merge=False, force_add=False)
        new = OmegaConf.select(plain, key, default=None)
        if old != new:
            changes[key] = (old, new)
    return to_typed(plain), changes


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with every file path made absolute (against the current directory), so that a
    run can be resumed, queried and evaluated from any directory; done once, when a run starts."""
    from pathlib import Path

    def absolute(path: Optional[str]) -> Optional[str]:
        return str(Path(path).expanduser().resolve()) if path else path

    cfg.scene.path, cfg.scene.cache_dir = absolute(cfg.scene.path), absolute(cfg.scene.cache_dir)
    cfg.scene.labels_dir = absolute(cfg.scene.labels_dir)
    cfg.encoder.cache_dir = absolute(cfg.encoder.cache_dir)
    cfg.encoder.clip_checkpoint = absolute(cfg.encoder.clip_checkpoint)
    cfg.encoder.dino_checkpoint = absolute(cfg.encoder.dino_checkpoint)
    cfg.resume = absolute(cfg.resume)
    return cfg


def to_typed(cfg: Any) -> TrainConfig:
    """A composed config (DictConfig or plain dict, e.g. from a checkpoint) as typed dataclasses,
    validated against the schema; code below the entry points only sees these."""
    from omegaconf import OmegaConf

    if isinstance(cfg, TrainConfig):
        return cfg
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg))


def to_plain(cfg: TrainConfig) -> dict:
    """The config as plain containers (for checkpoints and YAML)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
