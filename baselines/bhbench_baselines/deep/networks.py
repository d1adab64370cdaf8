"""The networks. Every one maps an (n, 3, h, w) batch to a dict of logits, one entry per head:
"class" always, "magnification" for the multi-task CNN."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
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


class BayramogluCNN(nn.Module):
    """Bayramoglu et al. 2016 on a 100x100 input: three convolutions, two fully connected layers of
    512 (ReLU, dropout 0.5), then an output layer. With `n_magnifications` it is their multi-task
    CNN: the whole network is shared and only the output layer is split, into a tumour layer and a
    magnification layer, so the gradients of the two losses add up in every shared layer (splitting
    earlier is what the paper leaves to future work).

    The filter counts and sizes, pooling and LRN order are the paper's; strides and padding are not
    given, so they are inferred. The layer order is CaffeNet's, whose first convolution (11x11 on
    227 px) has stride 4 and leaves a 6x6 map before the fully connected layers. Here the first
    convolution is 7x7 on 100 px: after it the three 3x3/2 max-pools leave a 2x2 map at stride 4, 3x3
    at stride 3 and 5x5 at stride 2, the closest to CaffeNet's 6x6. So stride 2 (inferred, not
    stated); the later convolutions keep their input size (padding 2 and 1), as CaffeNet's do."""

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
            nn.Linear(384 * 5 * 5, 512),  # 100 -> 47 -> 23 -> 23 -> 11 -> 11 -> 5
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
        )
        self.heads = nn.ModuleDict({"class": nn.Linear(512, n_classes)})
        if n_magnifications:
            self.heads["magnification"] = nn.Linear(512, n_magnifications)

    def forward(self, x: torch.Tensor) -> Logits:
        shared = self.features(x)
        return {name: head(shared) for name, head in self.heads.items()}


def feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last feature map, (n, channels, h, w)."""
    return backbone.forward_features(x)  # type: ignore[operator]


class PooledClassifier(nn.Module):
    """Backbone feature map -> global average pool -> linear (Liu et al.'s plain head; their SE
    models are the same head on a backbone with SE blocks inside, see backbones.py)."""

    def __init__(self, backbone: nn.Module, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(num_features(backbone), n_classes)

    def forward(self, x: torch.Tensor) -> Logits:
        return {"class": self.fc(feature_map(self.backbone, x).mean(dim=(2, 3)))}


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
