"""The networks. Every one maps an (n, 3, h, w) batch to a dict of logits, one entry per head:
"class" always, "magnification" for the multi-task CNN."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SEModule
from torch import nn

Logits = dict[str, torch.Tensor]


def num_features(backbone: nn.Module) -> int:
    """Channels of a timm backbone's feature map (every timm model records them)."""
    return int(backbone.num_features)  # type: ignore[arg-type]


def pretrained_cfg(backbone: nn.Module) -> dict[str, Any]:
    """A timm model's pretrained configuration: input normalisation, classifier name..."""
    return dict(backbone.pretrained_cfg)  # type: ignore[arg-type]


def _lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)  # AlexNet's constants


def _dense_head(in_features: int, n_out: int) -> nn.Sequential:
    """Two fully connected layers of 512 with ReLU and dropout 0.5, then the output layer."""
    return nn.Sequential(
        nn.Linear(in_features, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, 512),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(512, n_out),
    )


class BayramogluCNN(nn.Module):
    """Bayramoglu et al. 2016 on a 100x100 input; with `n_magnifications` it is their multi-task
    CNN, the fully connected layers duplicated into a tumour head and a magnification head.

    The filter counts and sizes, pooling and LRN order are the paper's. Strides and padding are not
    given; we follow CaffeNet, which this layer order copies: the first convolution has stride 2, the
    others keep their input size (padding 2 and 1), each max-pool is 3x3 with stride 2."""

    def __init__(self, n_classes: int, n_magnifications: int = 0):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            _lrn(),
            nn.Conv2d(96, 256, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            _lrn(),
            nn.Conv2d(256, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Flatten(),
        )
        flat = 384 * 5 * 5  # 100 -> 47 -> 23 -> 23 -> 11 -> 11 -> 5
        self.heads = nn.ModuleDict({"class": _dense_head(flat, n_classes)})
        if n_magnifications:
            self.heads["magnification"] = _dense_head(flat, n_magnifications)

    def forward(self, x: torch.Tensor) -> Logits:
        shared = self.features(x)
        return {name: head(shared) for name, head in self.heads.items()}


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last feature map, (n, channels, h, w)."""
    return backbone.forward_features(x)  # type: ignore[operator]


class PooledClassifier(nn.Module):
    """Backbone feature map -> optional squeeze-and-excitation (reduction 8) -> global average pool
    -> linear (Liu et al.'s plain and SE heads)."""

    def __init__(self, backbone: nn.Module, n_classes: int, squeeze_excite: bool):
        super().__init__()
        channels = num_features(backbone)
        self.backbone = backbone
        self.se = SEModule(channels, rd_ratio=1 / 8) if squeeze_excite else nn.Identity()
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> Logits:
        fmap = self.se(feature_map(self.backbone, x))
        return {"class": self.fc(fmap.mean(dim=(2, 3)))}


def signed_sqrt(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    # The clamp keeps the gradient finite at 0; values below eps change by at most sqrt(eps).
    return torch.sign(x) * torch.sqrt(x.abs().clamp_min(eps))


def bilinear_pool(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) x (n, d, h, w) -> (n, c*d): the outer products a_l b_l^T of the two feature
    vectors at each location l, averaged over locations, then signed square root and L2 norm."""
    n, c, h, w = a.shape
    gram = torch.bmm(a.reshape(n, c, h * w), b.reshape(n, b.shape[1], h * w).transpose(1, 2)) / (h * w)
    return F.normalize(signed_sqrt(gram.reshape(n, -1)), dim=1)


def _reducer(channels: int, dim: int | None) -> nn.Module:
    if dim is None:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))


class BilinearClassifier(nn.Module):
    """BCNN (two backbones, `second` given) or Fast BCNN (one backbone whose features are used
    twice, `second=None`): bilinear pooling of the two feature maps, then linear. `reduce_dim`
    puts a 1x1 convolution to that many channels on each stream before pooling."""

    def __init__(self, first: nn.Module, second: nn.Module | None, n_classes: int, reduce_dim: int | None):
        super().__init__()
        channels = num_features(first)
        self.first, self.second = first, second
        self.reduce = nn.ModuleList(_reducer(channels, reduce_dim) for _ in range(1 if second is None else 2))
        dim = reduce_dim or channels
        self.fc = nn.Linear(dim * dim, n_classes)

    def forward(self, x: torch.Tensor) -> Logits:
        a = self.reduce[0](feature_map(self.first, x))
        b = a if self.second is None else self.reduce[1](feature_map(self.second, x))
        with torch.autocast(x.device.type, enabled=False):  # outer products in float32
            pooled = bilinear_pool(a.float(), b.float())
        return {"class": self.fc(pooled)}


def backbones_of(net: nn.Module) -> list[nn.Module]:
    """The timm backbones inside a network (one, or two for BCNN)."""
    if isinstance(net, PooledClassifier):
        return [net.backbone]
    if isinstance(net, BilinearClassifier):
        return [net.first] if net.second is None else [net.first, net.second]
    return []
