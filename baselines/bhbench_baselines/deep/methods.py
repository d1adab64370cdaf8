"""The deep methods and their registration. torch-free: torch and timm are imported by `fit`, so
listing methods stays fast."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bhbench import MAGNIFICATIONS, Method, TestSet, TrainSet, register
from bhbench.errors import UserError
from bhbench_baselines.deep.profiles import (
    BAYRAMOGLU_PAPER,
    BAYRAMOGLU_QUICK,
    LIU_PAPER,
    LIU_QUICK,
    Profile,
)

if TYPE_CHECKING:
    from torch import nn

    from bhbench_baselines.deep.training import Fitted, Head

BAYRAMOGLU = "Bayramoglu, Kannala, Heikkila, ICPR 2016"
LIU = "Liu, Juhas, Zhang, Front. Genet. 2020"


def _store(method: Method, values: dict[str, Any]) -> None:
    """scikit-learn's rule: the constructor only keeps its arguments."""
    for name in method.param_names():
        setattr(method, name, values[name])


class DeepMethod(Method):
    """Shared fit / predict of the deep methods; subclasses give the network and the heads."""

    paper_profile: ClassVar[Profile]
    quick_profile: ClassVar[Profile]
    square: ClassVar[bool] = False  # centre-crop to a square before resizing
    profile: str
    device: str
    seed: int
    epochs: int | None
    batch_size: int | None
    lr: float | None

    def profile_overrides(self) -> dict[str, Any]:
        """Profile fields the user set through parameters."""
        chosen = {"max_epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        return {k: v for k, v in chosen.items() if v is not None}

    def build_network(self, n_classes: int, profile: Profile) -> nn.Module:
        raise NotImplementedError

    def targets(self, train: TrainSet) -> dict[str, Head]:
        from bhbench_baselines.deep.training import Head

        return {"class": Head(train.y, train.n_classes, 1.0)}

    def describe(self, profile: Profile) -> dict[str, Any]:
        """Facts about the network for fit_info."""
        return {}

    def fit(self, train: TrainSet) -> DeepMethod:
        from bhbench_baselines.deep import training

        self._fitted: Fitted = training.fit(self, train)
        self._last: tuple[TestSet, dict[str, np.ndarray]] | None = None
        return self

    def _outputs(self, test: TestSet) -> dict[str, np.ndarray]:
        """All heads' probabilities, computed once per test set (predict_proba and predict_aux
        are called one after the other on the same set)."""
        from bhbench_baselines.deep import training

        if not hasattr(self, "_fitted"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        if self._last is None or self._last[0] is not test:
            self._last = (test, training.predict(self._fitted, test))
        return self._last[1]

    def predict_proba(self, test: TestSet) -> np.ndarray:
        return self._outputs(test)["class"]

    def fit_info(self) -> dict[str, Any]:
        return dict(self._fitted.info)


@register("cnn", family="deep", reference=f"{BAYRAMOGLU} (single task)", input="100x100 centre square")
class SingleTaskCNN(DeepMethod):
    """Bayramoglu et al.'s single-task CNN (3 conv + 2 FC layers) on 100x100 centre squares."""

    paper_profile = BAYRAMOGLU_PAPER
    quick_profile = BAYRAMOGLU_QUICK
    square = True

    def __init__(
        self,
        *,
        profile: str = "auto",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str = "auto",
        seed: int = 0,
    ):
        _store(self, locals())

    def build_network(self, n_classes: int, profile: Profile) -> nn.Module:
        from bhbench_baselines.deep.networks import BayramogluCNN

        return BayramogluCNN(n_classes)


@register("mtcnn", family="deep", reference=f"{BAYRAMOGLU} (multi-task)", input="100x100 centre square")
class MultiTaskCNN(DeepMethod):
    """Bayramoglu et al.'s multi-task CNN: tumour class and magnification heads on shared layers."""

    paper_profile = BAYRAMOGLU_PAPER
    quick_profile = BAYRAMOGLU_QUICK
    square = True

    def __init__(
        self,
        *,
        w_class: float = 0.5,
        w_mag: float = 0.5,
        profile: str = "auto",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str = "auto",
        seed: int = 0,
    ):
        _store(self, locals())

    def build_network(self, n_classes: int, profile: Profile) -> nn.Module:
        from bhbench_baselines.deep.networks import BayramogluCNN

        return BayramogluCNN(n_classes, n_magnifications=len(MAGNIFICATIONS))

    def targets(self, train: TrainSet) -> dict[str, Head]:
        from bhbench_baselines.deep.training import Head

        if min(self.w_class, self.w_mag) < 0 or self.w_class + self.w_mag <= 0:
            weights = f"w_class={self.w_class}, w_mag={self.w_mag}"
            raise UserError(f"loss weights must be >= 0 and not both 0, got {weights}")
        unknown = sorted(set(np.unique(train.magnification)) - set(MAGNIFICATIONS))
        if unknown:
            raise UserError(f"magnifications {unknown} are not among {MAGNIFICATIONS}")
        magnification = np.searchsorted(MAGNIFICATIONS, train.magnification)
        return {
            "class": Head(train.y, train.n_classes, self.w_class),
            "magnification": Head(magnification, len(MAGNIFICATIONS), self.w_mag),
        }

    def predict_aux(self, test: TestSet) -> dict[str, np.ndarray]:
        return {"magnification": self._outputs(test)["magnification"]}


class BackboneMethod(DeepMethod):
    """A timm backbone and one of Liu et al.'s heads; `head` is set by each registered class."""

    paper_profile = LIU_PAPER
    quick_profile = LIU_QUICK
    head: ClassVar[str]  # plain, se, bcnn or fast_bcnn
    backbone: str
    input_size: int | None
    pretrained: bool
    weights: str | None

    def profile_overrides(self) -> dict[str, Any]:
        chosen = super().profile_overrides()
        return chosen if self.input_size is None else {**chosen, "input_size": self.input_size}

    def _backbone(self, profile: Profile) -> nn.Module:
        from bhbench_baselines.deep.backbones import create_backbone

        return create_backbone(self.backbone, bool(self.pretrained), self.weights, profile.input_size)

    def describe(self, profile: Profile) -> dict[str, Any]:
        weights = "timm hub (pretrained)" if self.pretrained else self.weights or "random initialisation"
        return {"backbone": self.backbone, "head": self.head, "weights": weights}


class PooledMethod(BackboneMethod):
    def __init__(
        self,
        *,
        backbone: str = "inception_v3",
        profile: str = "auto",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        input_size: int | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        device: str = "auto",
        seed: int = 0,
    ):
        _store(self, locals())

    def build_network(self, n_classes: int, profile: Profile) -> nn.Module:
        from bhbench_baselines.deep.networks import PooledClassifier

        return PooledClassifier(self._backbone(profile), n_classes, squeeze_excite=self.head == "se")


class BilinearMethod(BackboneMethod):
    bilinear_dim: int | None

    def __init__(
        self,
        *,
        backbone: str = "inception_v3",
        bilinear_dim: int | None = None,
        profile: str = "auto",
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        input_size: int | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        device: str = "auto",
        seed: int = 0,
    ):
        _store(self, locals())

    def profile_overrides(self) -> dict[str, Any]:
        chosen = super().profile_overrides()
        if self.bilinear_dim is None:
            return chosen
        if self.bilinear_dim < 0:
            raise UserError(f"bilinear_dim must be >= 0 (0: no reduction), got {self.bilinear_dim}")
        return {**chosen, "bilinear_dim": self.bilinear_dim or None}

    def build_network(self, n_classes: int, profile: Profile) -> nn.Module:
        from bhbench_baselines.deep.networks import BilinearClassifier

        second = self._backbone(profile) if self.head == "bcnn" else None
        return BilinearClassifier(self._backbone(profile), second, n_classes, profile.bilinear_dim)

    def describe(self, profile: Profile) -> dict[str, Any]:
        return {**super().describe(profile), "bilinear_dim": profile.bilinear_dim}


# name suffix -> (base class, head, class-name suffix, summary)
_HEADS = {
    "": (PooledMethod, "plain", "", "global average pool + linear"),
    "_se": (PooledMethod, "se", "SE", "squeeze-and-excitation (reduction 8), global average pool, linear"),
    "_bcnn": (BilinearMethod, "bcnn", "BCNN", "two backbones, bilinear pooling, linear"),
    "_fast_bcnn": (BilinearMethod, "fast_bcnn", "FastBCNN", "one backbone used twice, bilinear, linear"),
}
_BACKBONES = {
    "resnet50": "ResNet50",
    "inception_v3": "InceptionV3",
    "inception_resnet_v2": "InceptionResnetV2",
}


def _register_variant(name: str, backbone: str, suffix: str, class_name: str) -> None:
    """Register `name` as a class whose `backbone` default is `backbone` and whose head is the
    suffix's; each name needs its own class (the registry records the name on it)."""
    base, head, _, summary = _HEADS[suffix]
    init = base.__init__
    new_init = types.FunctionType(init.__code__, init.__globals__, "__init__", None, init.__closure__)
    new_init.__kwdefaults__ = {**(init.__kwdefaults__ or {}), "backbone": backbone}
    new_init.__qualname__ = f"{class_name}.__init__"
    doc = f"{_BACKBONES[backbone]}, {summary}."
    namespace = {"__init__": new_init, "__doc__": doc, "__module__": __name__, "head": head}
    cls = type(class_name, (base,), namespace)
    globals()[class_name] = cls  # so instances pickle
    inputs = f"{LIU_PAPER.input_size} (paper) / {LIU_QUICK.input_size} (quick)"
    register(name, family="deep", reference=LIU, backbone=backbone, head=head, input=inputs)(cls)


def _register_backbone_methods() -> None:
    for backbone, label in _BACKBONES.items():
        for suffix, (_, _, class_suffix, _) in _HEADS.items():
            _register_variant(backbone + suffix, backbone, suffix, label + class_suffix)
    # Liu et al.'s best backbone, under the short names.
    _register_variant("bcnn", "inception_v3", "_bcnn", "BCNN")
    _register_variant("fast_bcnn", "inception_v3", "_fast_bcnn", "FastBCNN")


_register_backbone_methods()
