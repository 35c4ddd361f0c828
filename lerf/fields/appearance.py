"""Per-image appearance embedding (NeRF-W §4.1, nerfacto): one learned vector per training frame.

Handheld captures change exposure and white balance from frame to frame. A vector per training
frame, fed to the colour MLP, lets the field explain those changes per frame instead of baking
them into geometry or view-dependent colour. Only the colour head sees it: the language field
never does, because what a thing is must not depend on how bright its photo was.

Frames are named by their index in the scene (`SceneData` order). A frame that was not trained
on (a held-out view) or a camera that is no frame at all (a path, a resized copy) has no vector
of its own; it gets the documented eval choice: "mean", the mean of the training vectors
(nerfstudio's nerfacto default, `use_average_appearance_embedding=True`), or "zeros".
"""
from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

EVAL_CHOICES = ("mean", "zeros")


class AppearanceEmbedding(nn.Module):
    """Scene frame index -> appearance vector; frames outside `train_frames` get the eval choice.

    Example: train_frames [1, 2, 3] of 4 frames, eval "mean": frame 2 gets row 1 of the table,
    frame 0 (held out) and `None` (no frame) get the mean of rows 0..2.
    """

    def __init__(self, train_frames: list[int], num_frames: int, dim: int, eval_choice: str = "mean"):
        super().__init__()
        if eval_choice not in EVAL_CHOICES:
            raise ValueError(f"model.appearance_eval must be one of {'|'.join(EVAL_CHOICES)}, got '{eval_choice}'")
        self.dim = dim
        self.eval_choice = eval_choice
        self.embedding = nn.Embedding(len(train_frames), dim)  # N(0, 1) init, as nerfstudio's
        row = torch.full((max(num_frames, 1),), -1, dtype=torch.long)
        row[torch.as_tensor(train_frames, dtype=torch.long)] = torch.arange(len(train_frames))
        # Derived from the scene geometry stored in the checkpoint, so not saved with the weights.
        self.register_buffer("row_of_frame", row, persistent=False)

    def eval_vector(self) -> Float[Tensor, " d"]:
        """The vector of a view that is not a training frame (see the module docstring)."""
        table = self.embedding.weight
        if self.eval_choice == "zeros" or table.shape[0] == 0:
            return torch.zeros(self.dim, device=table.device, dtype=table.dtype)
        return table.mean(0)

    def forward(self, frame_idx: Optional[Int[Tensor, " r"]], num_rays: int) -> Float[Tensor, "r d"]:
        fallback = self.eval_vector().expand(num_rays, -1)
        if frame_idx is None or self.embedding.num_embeddings == 0:
            return fallback
        row = self.row_of_frame[frame_idx]
        own = self.embedding(row.clamp(min=0))
        return torch.where((row >= 0)[:, None], own, fallback)
