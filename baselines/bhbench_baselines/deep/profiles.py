"""Training recipes. `paper` follows the publication; `quick` is sized so that the default run
(`bhbench run --method fast_bcnn`, five folds of about 900 training images) finishes within ten
minutes on a 2-core CPU. torch-free, so `bhbench list` can show them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    input_size: int  # side of the square network input, pixels
    batch_size: int
    max_epochs: int
    optimizer: str  # "sgd" (momentum 0.9) or "adamw"
    lr: float
    weight_decay: float
    plateau_patience: int  # epochs without a better validation loss before the lr is divided by 10
    stop_patience: int  # epochs without a better validation loss before training stops
    quarter_turns: bool  # augment with random 90-degree rotations
    flips: bool  # augment with random horizontal and vertical flips
    max_shift: float  # augment with random shifts up to this fraction of the side
    bilinear_dim: int | None  # 1x1-conv channel reduction before bilinear pooling (None: none)


# Liu, Juhas, Zhang, Front. Genet. 2020: 224x224, SGD, batch 16, lr x0.1 on a 10-epoch plateau, up to
# 100 epochs, flips / shifts / rotations. Early stopping after 20 flat epochs is ours (not stated).
LIU_PAPER = Profile(
    name="paper",
    input_size=224,
    batch_size=16,
    max_epochs=100,
    optimizer="sgd",
    lr=1e-3,
    weight_decay=0.0,
    plateau_patience=10,
    stop_patience=20,
    quarter_turns=True,
    flips=True,
    max_shift=0.1,
    bilinear_dim=None,
)

# CPU-sized: a 96 px input (InceptionV3 needs >= 75 px), AdamW so that randomly initialised weights
# learn in a few epochs, and the bilinear features reduced to 128 channels (16,384 dimensions instead
# of 4.2 million) so the classifier on top of them trains in that time too.
LIU_QUICK = Profile(
    name="quick",
    input_size=96,
    batch_size=32,
    max_epochs=3,
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1e-4,
    plateau_patience=1,
    stop_patience=3,
    quarter_turns=True,
    flips=True,
    max_shift=0.05,
    bilinear_dim=128,
)

# Bayramoglu, Kannala, Heikkila, ICPR 2016: 100x100, SGD with momentum 0.9, minibatch 100, the 8
# rotations/flips of the dihedral group. Learning-rate schedule and epoch budget are not given in
# the paper; we use Liu et al.'s plateau rule for both models.
BAYRAMOGLU_PAPER = Profile(
    name="paper",
    input_size=100,
    batch_size=100,
    max_epochs=100,
    optimizer="sgd",
    lr=1e-2,
    weight_decay=5e-4,
    plateau_patience=10,
    stop_patience=20,
    quarter_turns=True,
    flips=True,
    max_shift=0.0,
    bilinear_dim=None,
)

BAYRAMOGLU_QUICK = Profile(
    name="quick",
    input_size=100,
    batch_size=32,
    max_epochs=4,
    optimizer="adamw",
    lr=1e-3,
    weight_decay=1e-4,
    plateau_patience=1,
    stop_patience=4,
    quarter_turns=True,
    flips=True,
    max_shift=0.0,
    bilinear_dim=None,
)
