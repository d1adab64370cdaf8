"""timm backbones (feature maps only) and their initial weights: random, timm's hub download, or
a local state dict."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import timm
import torch
from timm.models import load_state_dict
from torch import nn

from bhbench.errors import UserError
from bhbench_baselines.deep.networks import num_features, pretrained_cfg


def create_backbone(name: str, pretrained: bool, weights: str | None, input_size: int) -> nn.Module:
    """A timm model without classifier or pooling: `forward_features` gives (n, c, h, w)."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `timm.list_models()` lists them"
        raise UserError(f"unknown timm backbone {name!r}{hint}")
    if pretrained and weights:
        raise UserError("give either pretrained=true or weights=PATH, not both")
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="")
    except Exception as exc:  # hub errors come as OSError, HTTP and hub-specific exceptions
        if not pretrained:
            raise
        raise UserError(
            f"could not download the pretrained weights of {name!r} from the timm hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); without internet, "
            f"fetch them elsewhere and pass weights=PATH"
        ) from None
    _check_feature_map(model, name, input_size)
    if weights:
        load_backbone_weights(model, weights)
    return model


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
        raise UserError(f"weights file {path} does not match backbone {arch}: {'; '.join(problems)}")
    model.load_state_dict({k: state[k] for k in expected})
