"""Typed schemas for every config group: the one home of every setting.

`conf/` holds the presets (YAML files per group); Hydra merges them into these dataclasses, so a
typo or a wrong type in a preset or on the command line is an error, not a silent new key.
Groups mirror the code: scene → lerf.data, model → lerf.fields/lerf.render, encoder →
lerf.encoders, optim → lerf.optim, trainer → lerf.trainer, relevancy → lerf.relevancy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SceneConfig:
    name: str = "demo"
    # "demo": generate the synthetic scene into cache_dir; "nerfstudio": read `path`.
    kind: str = "demo"
    path: Optional[str] = None
    downscale: int = 1  # uses images_{2,4,8}/ when present, else resizes on load
    eval_every: int = 8  # frame i is held out when i % eval_every == 0 (0 disables)
    # Demo-scene generation (kind=demo only).
    seed: int = 0
    num_views: int = 48
    width: int = 128
    height: int = 128
    cache_dir: str = ".cache/lerf"
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
    clip_loss: str = "huber"  # huber | cosine
    huber_delta: float = 1.25
    clip_weight: float = 0.1
    dino_weight: float = 1.0
    # Training crop sizes: a single fraction pins every ray to one pyramid level (ablation).
    single_scale: Optional[float] = None
    # The CLIP head's scale input (LERF §3.1: the crop's physical size, metres). Ablations:
    # "no_depth" feeds the crop's angular size times nominal_depth_m (crop fraction only, every
    # pixel as if at that depth); "none" feeds a constant 0 (no scale input).
    scale_input: str = "metres"  # metres | no_depth | none
    nominal_depth_m: float = 1.0


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
    language: LanguageConfig = field(default_factory=LanguageConfig)


@dataclass
class EncoderConfig:
    clip: str = "openclip"  # openclip | reference
    clip_model: str = "ViT-B-16"
    clip_pretrained: str = "laion2b_s34b_b88k"
    clip_checkpoint: Optional[str] = None  # a local weights file: loads offline
    dino: str = "dino"  # dino | reference
    dino_model: str = "vit_small_patch8_224.dino"
    dino_checkpoint: Optional[str] = None
    reference_clip_dim: int = 128
    reference_dino_dim: int = 64
    reference_dino_stride: int = 4
    # LERF §3.1: crops from 5% to 50% of the image height over 7 levels.
    pyramid_min_frac: float = 0.05
    pyramid_max_frac: float = 0.5
    pyramid_levels: int = 7
    batch_size: int = 64
    cache_dir: str = ".cache/lerf/features"
    allow_random_weights: bool = False  # tests and benchmarks only


@dataclass
class OptimConfig:
    lr: float = 1e-2
    lr_final: float = 1e-3
    decay_steps: int = 5000  # exponential decay over these steps, then held
    weight_decay: float = 1e-9
    eps: float = 1e-15


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
    eval_chunk: int = 4096  # rays per chunk when rendering full images
    eval_at_end: bool = True
    # Also localization + segmentation at the end, when the scene has labels/ (the demo does).
    eval_language: bool = True
    progress: bool = True


@dataclass
class RelevancyConfig:
    # LERF §3.4: relevancy = min over canonical phrases of the pairwise softmax.
    canonical_phrases: List[str] = field(default_factory=lambda: ["object", "things", "stuff", "texture"])
    temperature: float = 10.0  # the softmax multiplies cosine similarities by this
    # LERF §3.4: the scale is searched over 30 values in 0-2 m.
    scale_min_m: float = 0.0
    scale_max_m: float = 2.0
    num_scales: int = 30
    tensorboard_prompt: Optional[str] = None  # relevancy image in TensorBoard for this prompt


@dataclass
class TrainConfig:
    scene: SceneConfig = field(default_factory=SceneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    relevancy: RelevancyConfig = field(default_factory=RelevancyConfig)
    experiment: Optional[str] = None
    resume: Optional[str] = None  # a run dir: continue its latest checkpoint
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
