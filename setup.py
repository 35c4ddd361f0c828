"""lerf: Language Embedded Radiance Fields, standalone PyTorch reproduction.

Optional backend: tinycudann (not on PyPI). Install it from its repository on a CUDA machine
(`pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch`);
`backend=auto` then picks it up. Without it the hash grid uses our torch reference on CPU and
our Triton kernel on CUDA.
"""
from setuptools import find_packages, setup

setup(
    name="lerf",
    version="0.1.0",
    description="Language Embedded Radiance Fields (LERF) in plain PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["lerf", "lerf.*"]),
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "imageio>=2.31",
        "hydra-core>=1.3,<1.4",
        "tensorboard>=2.14",
        "jaxtyping>=0.2.25",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "open_clip_torch>=2.23",
        "timm>=0.9",
        "plyfile>=1.0",  # binary little-endian .ply export
        "imageio-ffmpeg>=0.5",  # MP4 videos; its wheel ships an ffmpeg binary
        "viser>=1.0",  # view.py; its wheel ships the web client, so the viewer works offline
        "filelock>=3.12",  # the run-directory lock (lerf/train/runlock.py), demo-scene generation
        "pycolmap>=4.0",  # COLMAP folders (lerf/data/colmap.py) and prepare.py's SfM on the CPU; 4.x API, tested with 4.2.1
    ],
    extras_require={
        # The sweep test drives Hydra's submitit launcher locally, so tests need the launchers too.
        "test": ["pytest>=7.4", "beartype>=0.16", "import-linter>=2.1", "hydra-joblib-launcher>=1.2",
                 "hydra-submitit-launcher>=1.2", "submitit>=1.5",
                 # The browser test drives Debian's Chromium (apt-get install chromium), never a
                 # browser downloaded by playwright.
                 "playwright>=1.40"],
        "sweep": ["hydra-joblib-launcher>=1.2", "hydra-submitit-launcher>=1.2", "submitit>=1.5"],
    },
    # The programs behind train.py, query.py, view.py and eval/*.py (lerf/apps/); they read the
    # checkout's conf/ and eval/, so install with `pip install -e .`.
    entry_points={"console_scripts": [
        "lerf-train = lerf.apps.train:main",
        "lerf-query = lerf.apps.query:cli",
        "lerf-view = lerf.apps.view:cli",
        "lerf-eval = lerf.apps.evaluate:main",
    ]},
)
