"""Training-time augmentation on a batch tensor: rotations (quarter turns or any angle), flips and
shifts, drawn per image and applied in one resampling call."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bhbench_baselines.deep.recipes import Recipe

# cos and sin of 0, 90, 180 and 270 degrees, exact, so a pure quarter turn resamples losslessly.
_COS = torch.tensor([1.0, 0.0, -1.0, 0.0])
_SIN = torch.tensor([0.0, 1.0, 0.0, -1.0])


def augment(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotated, flipped and shifted copy of a (n, c, h, w) batch; borders are filled as
    the recipe says (reflected, or the nearest edge pixel repeated)."""
    if not (recipe.quarter_turns or recipe.max_rotation or recipe.flips or recipe.max_shift):
        return x
    n = x.shape[0]
    turns = torch.randint(0, 4 if recipe.quarter_turns else 1, (n,), generator=generator)
    cos, sin = _COS[turns], _SIN[turns]
    if recipe.max_rotation:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(recipe.max_rotation)
        cos, sin = cos * angle.cos() - sin * angle.sin(), sin * angle.cos() + cos * angle.sin()
    ones = torch.ones(n)
    flip_x, flip_y = ones, ones
    if recipe.flips:
        flip_x = torch.where(torch.rand(n, generator=generator) < 0.5, -ones, ones)
        flip_y = torch.where(torch.rand(n, generator=generator) < 0.5, -ones, ones)
    # The grid spans [-1, 1], two units per side, hence the factor 2 on the shift.
    shift = (torch.rand(2, n, generator=generator) * 2 - 1) * 2 * recipe.max_shift
    theta = torch.stack(
        [
            torch.stack([cos * flip_x, -sin * flip_y, shift[0]], dim=1),
            torch.stack([sin * flip_x, cos * flip_y, shift[1]], dim=1),
        ],
        dim=1,
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=recipe.fill, align_corners=False)
