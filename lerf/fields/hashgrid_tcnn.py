"""tiny-cuda-nn's HashGrid with our hyper-parameters (imported only when backend='tcnn').

Not interchangeable with the torch/triton backends, by tcnn's design: tcnn places level ``l``'s
vertices at ``x * (base * b**l - 1) + 0.5`` (see tcnn ``grid.h``: ``scale = exp2(l * log2(b)) *
base - 1``, ``pos = x * scale + 0.5``) and keeps its own parameter layout. Values therefore differ
from ours for the same table, and a checkpoint trained with one backend does not load into the
other. The growth factor b is the same Instant-NGP one our layout uses.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def tcnn_encoding_config(num_levels: int, features_per_level: int, log2_hashmap_size: int,
                         base_resolution: int, max_resolution: int) -> dict:
    """tcnn's ``encoding_config`` for our hyper-parameters.

    >>> tcnn_encoding_config(2, 2, 19, 16, 32)["per_level_scale"]
    2.0
    """
    growth = 1.0 if num_levels == 1 else math.exp(
        (math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    return {
        "otype": "HashGrid",
        "n_levels": num_levels,
        "n_features_per_level": features_per_level,
        "log2_hashmap_size": log2_hashmap_size,
        "base_resolution": base_resolution,
        "per_level_scale": growth,
    }


def make_tcnn_encoding(num_levels: int, features_per_level: int, log2_hashmap_size: int,
                       base_resolution: int, max_resolution: int) -> nn.Module:
    """A ``tinycudann.Encoding`` with float32 parameters and output, like the other backends.

    (tcnn's default picks fp16 on most GPUs: faster, but a half-precision table.) Its parameters
    live on the GPU from the start. The seed is drawn from torch's generator, so that
    ``torch.manual_seed`` governs tcnn's U(-1e-4, 1e-4) initialisation as it does ours.
    """
    import tinycudann as tcnn  # lazy: only importable on CUDA machines with tcnn built

    config = tcnn_encoding_config(num_levels, features_per_level, log2_hashmap_size,
                                  base_resolution, max_resolution)
    seed = int(torch.randint(0, 2**31 - 1, ()).item())
    return tcnn.Encoding(n_input_dims=3, encoding_config=config, seed=seed, dtype=torch.float32)
