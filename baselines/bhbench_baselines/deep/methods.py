"""The deep methods and their registration. torch-free: torch and timm are imported by `fit`, so
listing methods stays fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np

from bhbench import MAGNIFICATIONS, Interval, Method, TestSet, TrainSet, check_is_fitted, register
from bhbench.errors import UserError
from bhbench.registry import MethodCard
from bhbench_baselines.deep.recipes import (
    BAYRAMOGLU_PAPER,
    BAYRAMOGLU_QUICK,
    IMAGENET_QUICK_FT,
    LIU_PAPER,
    LIU_QUICK,
    Recipe,
)

if TYPE_CHECKING:
    from torch import nn

    from bhbench_baselines.deep.training import Fitted, Head

BAYRAMOGLU = "Bayramoglu, Kannala, Heikkila, ICPR 2016"
LIU = "Liu, Juhas, Zhang, Front. Genet. 2020"
# What the `paper` recipes do differently from the publications, and why (shown by `bhbench list`).
BAYRAMOGLU_DEVIATIONS = (
    "strides inferred from CaffeNet (not stated); lr schedule and epochs not stated, Liu et al.'s plateau "
    "rule used; validation on 20% of the training patients (the paper tuned on the test fold's 40X images)"
)
LIU_DEVIATIONS = (
    "validation on 20% of the training patients (their code monitors the test fold); the best validation "
    "epoch is kept and training stops after 20 flat epochs (they keep epoch 100); input 224 inferred"
)
RESNET_SE_DEVIATION = (
    "SE on the residual branch of all 16 bottlenecks, as SENet and timm's seresnet50 (their code: after "
    "the addition, in the 12 identity blocks only)"
)


# What the parameters allow (bhbench.constraints), checked by the harness before any job starts.
Count = Annotated[int, Interval(1, None)]
BatchSize = Annotated[int, Interval(2, None)]  # batch norm needs two images
Positive = Annotated[float, Interval(0, None, closed="neither")]
Seed = Annotated[int, Interval(0, None)]
Recipes = Literal["auto", "paper", "quick"]


def _store(method: Method, values: dict[str, Any]) -> None:
    """scikit-learn's rule: the constructor only keeps its arguments."""
    for name in method.param_names():
        setattr(method, name, values[name])


class DeepMethod(Method):
    """Shared fit / predict of the deep methods; subclasses give the network and the heads."""

    paper_recipe: ClassVar[Recipe]
    quick_recipe: ClassVar[Recipe]
    square: ClassVar[bool] = False  # centre-crop to a square before resizing
    recipe: str
    device: str
    seed: int
    epochs: int | None
    batch_size: int | None
    lr: float | None

    @classmethod
    def check_params(cls) -> dict[str, Any]:
        """Small settings for the uniform checks: one epoch at a small input."""
        small = {"epochs": 1, "batch_size": 16, "input_size": 75, "bilinear_dim": 16}  # 75: InceptionV3's least
        return {k: v for k, v in small.items() if k in cls.param_names()}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """`bhbench tune`: the learning rate and the number of epochs (early stopping still applies)."""
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-2, log=True), "epochs": trial.suggest_int("epochs", 2, 40)}

    def recipe_overrides(self) -> dict[str, Any]:
        """Recipe fields the user set through parameters."""
        chosen = {"max_epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        return {k: v for k, v in chosen.items() if v is not None}

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module:
        raise NotImplementedError

    def init(self, recipe: Recipe) -> str:
        """Initial weights as records name them; the CNNs of Bayramoglu et al. train from scratch."""
        return "random"

    def targets(self, train: TrainSet) -> dict[str, Head]:
        from bhbench_baselines.deep.training import Head

        return {"class": Head(train.y, train.n_classes, 1.0)}

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        """Facts about the network for fit_info."""
        return {}

    def fit(self, train: TrainSet) -> DeepMethod:
        from bhbench_baselines.deep import training

        self.fitted_: Fitted = training.fit(self, train)
        self._outputs_of: tuple[TestSet, dict[str, np.ndarray]] | None = None  # a cache, not learned
        return self

    def _outputs(self, test: TestSet) -> dict[str, np.ndarray]:
        """All heads' probabilities, computed once per test set (predict_proba and predict_aux
        are called one after the other on the same set)."""
        check_is_fitted(self)
        from bhbench_baselines.deep import training

        if self._outputs_of is None or self._outputs_of[0] is not test:
            self._outputs_of = (test, training.predict(self.fitted_, test))
        return self._outputs_of[1]

    def predict_proba(self, test: TestSet) -> np.ndarray:
        return self._outputs(test)["class"]

    def fit_info(self) -> dict[str, Any]:
        return dict(self.fitted_.info)


class SingleTaskCNN(DeepMethod):
    """Bayramoglu et al.'s single-task CNN (3 conv + 2 FC layers) on 100x100 centre squares."""

    paper_recipe = BAYRAMOGLU_PAPER
    quick_recipe = BAYRAMOGLU_QUICK
    square = True

    def __init__(
        self,
        *,
        recipe: Recipes = "auto",
        epochs: Count | None = None,
        batch_size: BatchSize | None = None,
        lr: Positive | None = None,
        device: str = "auto",
        seed: Seed = 0,
    ):
        _store(self, locals())

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module:
        from bhbench_baselines.deep.networks import BayramogluCNN

        return BayramogluCNN(n_classes)


class MultiTaskCNN(DeepMethod):
    """Bayramoglu et al.'s multi-task CNN: one shared network, tumour and magnification output layers."""

    paper_recipe = BAYRAMOGLU_PAPER
    quick_recipe = BAYRAMOGLU_QUICK
    square = True

    def __init__(
        self,
        *,
        w_class: Positive = 1.0,
        w_mag: Annotated[float, Interval(0, None)] = 1.0,
        recipe: Recipes = "auto",
        epochs: Count | None = None,
        batch_size: BatchSize | None = None,
        lr: Positive | None = None,
        device: str = "auto",
        seed: Seed = 0,
    ):
        _store(self, locals())

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module:
        from bhbench_baselines.deep.networks import BayramogluCNN

        return BayramogluCNN(n_classes, n_magnifications=len(MAGNIFICATIONS))

    def targets(self, train: TrainSet) -> dict[str, Head]:
        """The paper adds the two losses (their gradients add at the split), so both weights are 1.
        w_class is declared > 0 (the class head is what is scored), w_mag >= 0 (0: single task)."""
        from bhbench_baselines.deep.training import Head

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
    """A timm backbone and one of Liu et al.'s heads; `head` is set by each subclass."""

    paper_recipe = LIU_PAPER
    quick_recipe = LIU_QUICK
    head: ClassVar[str]  # plain, se, bcnn or fast_bcnn
    backbone: str
    input_size: int | None
    weights: str

    def __init__(
        self,
        *,
        backbone: str = "inception_v3",
        weights: str = "auto",
        recipe: Recipes = "auto",
        epochs: Count | None = None,
        batch_size: BatchSize | None = None,
        lr: Positive | None = None,
        input_size: Annotated[int, Interval(32, None)] | None = None,
        device: str = "auto",
        seed: Seed = 0,
    ):
        _store(self, locals())

    def recipe_overrides(self) -> dict[str, Any]:
        chosen = super().recipe_overrides()
        return chosen if self.input_size is None else {**chosen, "input_size": self.input_size}

    def _weights(self, recipe: Recipe) -> str:
        from bhbench_baselines.deep.backbones import resolve_init

        return resolve_init(self.weights, recipe.needs_imagenet)

    def init(self, recipe: Recipe) -> str:
        from bhbench_baselines.deep.backbones import init_label

        return init_label(self.backbone, self._weights(recipe))

    def _backbone(self, recipe: Recipe) -> nn.Module:
        from bhbench_baselines.deep.backbones import create_backbone

        se = self.head == "se"
        return create_backbone(self.backbone, self._weights(recipe), recipe.input_size, squeeze_excite=se)

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        return {"backbone": self.backbone, "head": self.head}


class PooledCNN(BackboneMethod):
    """A timm backbone, global average pool, linear (Liu et al.'s base model)."""

    head = "plain"

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module:
        from bhbench_baselines.deep.networks import PooledClassifier

        return PooledClassifier(self._backbone(recipe), n_classes)


class SqueezeExciteCNN(PooledCNN):
    """A timm backbone with a squeeze-and-excitation block (reduction 8) in every block, then global
    average pool and linear (Liu et al.'s SE model)."""

    head = "se"


class FineTunedCNN(PooledCNN):
    """A timm backbone started from ImageNet weights, global average pool, linear; every layer
    fine-tuned by the short CPU recipe quick-ft (its only recipe)."""

    paper_recipe = quick_recipe = IMAGENET_QUICK_FT

    def __init__(
        self,
        *,
        backbone: str = "tf_efficientnet_lite0",
        weights: str = "imagenet",
        recipe: Literal["auto", "quick-ft"] = "auto",
        epochs: Count | None = None,
        batch_size: BatchSize | None = None,
        lr: Positive | None = None,
        input_size: Annotated[int, Interval(32, None)] | None = None,
        device: str = "auto",
        seed: Seed = 0,
    ):
        _store(self, locals())

    def _weights(self, recipe: Recipe) -> str:
        if self.weights == "random":  # the Liu recipes' refusal points to their quick recipe, absent here
            raise UserError(
                f"recipe {recipe.name} fine-tunes ImageNet weights: set weights=imagenet (an installed weight "
                f"provider's, else timm's hub) or weights=PATH (a local state dict)"
            )
        return super()._weights(recipe)


class BilinearCNN(BackboneMethod):
    """Two timm backbones, bilinear pooling of their feature maps, linear (Liu et al.'s BCNN)."""

    head = "bcnn"
    bilinear_dim: int | None

    def __init__(
        self,
        *,
        backbone: str = "inception_v3",
        weights: str = "auto",
        bilinear_dim: Annotated[int, Interval(0, None)] | None = None,
        recipe: Recipes = "auto",
        epochs: Count | None = None,
        batch_size: BatchSize | None = None,
        lr: Positive | None = None,
        input_size: Annotated[int, Interval(32, None)] | None = None,
        device: str = "auto",
        seed: Seed = 0,
    ):
        _store(self, locals())

    def recipe_overrides(self) -> dict[str, Any]:
        chosen = super().recipe_overrides()
        if self.bilinear_dim is None:
            return chosen
        return {**chosen, "bilinear_dim": self.bilinear_dim or None}  # 0: no reduction

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module:
        from bhbench_baselines.deep.networks import BilinearClassifier

        second = self._backbone(recipe) if self.head == "bcnn" else None
        return BilinearClassifier(self._backbone(recipe), second, n_classes, recipe.bilinear_dim)

    def describe(self, recipe: Recipe) -> dict[str, Any]:
        return {**super().describe(recipe), "bilinear_dim": recipe.bilinear_dim}


class FastBilinearCNN(BilinearCNN):
    """One timm backbone whose feature map is used twice, bilinear pooling, linear (Liu et al.'s
    Fast BCNN)."""

    head = "fast_bcnn"


def _card(reference: str, summary: str, deviations: str, weights_data: str = "", **facts: Any) -> MethodCard:
    facts = {**facts, "deviations": deviations}
    return MethodCard(family="deep", reference=reference, summary=summary, facts=facts, weights_data=weights_data)


register(
    "cnn",
    SingleTaskCNN,
    card=_card(
        f"{BAYRAMOGLU} (single task)",
        SingleTaskCNN.__doc__.splitlines()[0],
        BAYRAMOGLU_DEVIATIONS,
        input="100x100 centre square",
    ),  # fmt: skip
)
register(
    "mtcnn",
    MultiTaskCNN,
    card=_card(
        f"{BAYRAMOGLU} (multi-task)",
        MultiTaskCNN.__doc__.splitlines()[0],
        BAYRAMOGLU_DEVIATIONS,
        input="100x100 centre square",
    ),  # fmt: skip
)

_HEADS = {  # name suffix -> (class, summary)
    "": (PooledCNN, "global average pool + linear"),
    "_se": (SqueezeExciteCNN, "SE block (reduction 8) in every block, global average pool + linear"),
    "_bcnn": (BilinearCNN, "two backbones, bilinear pooling, linear"),
    "_fast_bcnn": (FastBilinearCNN, "one backbone used twice, bilinear pooling, linear"),
}
_BACKBONES = {"resnet50": "ResNet50", "inception_v3": "InceptionV3", "inception_resnet_v2": "InceptionResnetV2"}
_INPUTS = f"{LIU_PAPER.input_size} (paper) / {LIU_QUICK.input_size} (quick)"
# What the backbones' pretrained weights saw; used with weights=imagenet (auto: with the paper recipe).
IMAGENET_WEIGHTS = "ImageNet-1k"


def _register_backbone(name: str, backbone: str, suffix: str) -> None:
    cls, summary = _HEADS[suffix]
    deviations = LIU_DEVIATIONS + (f"; {RESNET_SE_DEVIATION}" if (backbone, suffix) == ("resnet50", "_se") else "")
    card = _card(LIU, f"{_BACKBONES[backbone]}, {summary}.", deviations, backbone=backbone, head=cls.head,
                 input=_INPUTS, weights_data=IMAGENET_WEIGHTS)  # fmt: skip
    register(name, cls, card=card, backbone=backbone)


for _backbone in _BACKBONES:
    for _suffix in _HEADS:
        _register_backbone(_backbone + _suffix, _backbone, _suffix)
# Liu et al.'s best backbone, under the short names.
_register_backbone("bcnn", "inception_v3", "_bcnn")
_register_backbone("fast_bcnn", "inception_v3", "_fast_bcnn")

# The ImageNet fine-tuning baseline, on the backbone whose weights an installed package provides.
register(
    "effnet_lite0_ft",
    FineTunedCNN,
    card=_card(
        "EfficientNet-Lite0 (Tan and Le, ICML 2019, Lite variant): bhbench's ImageNet fine-tuning baseline",
        "EfficientNet-Lite0 from ImageNet weights, global average pool + linear, every layer fine-tuned.",
        "none: a bhbench baseline, not a published model",
        backbone="tf_efficientnet_lite0",
        head="plain",
        input=f"{IMAGENET_QUICK_FT.input_size} (quick-ft)",
        weights_data=IMAGENET_WEIGHTS,
    ),
    backbone="tf_efficientnet_lite0",
)
