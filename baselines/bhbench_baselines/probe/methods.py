"""The probe method and its registered defaults. torch-free: torch and timm are imported by `fit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bhbench import Method, TestSet, TrainSet, register
from bhbench.errors import UserError
from bhbench.registry import MethodCard
from bhbench_baselines.probe.heads import HEADS

if TYPE_CHECKING:
    from bhbench_baselines.handcrafted.classifiers import FittedClassifier
    from bhbench_baselines.probe.embed import Embedder


class FrozenProbe(Method):
    """A frozen timm model's pooled embeddings, then a head tuned on training patients."""

    def __init__(
        self,
        *,
        model: str = "resnet50",
        weights: str = "imagenet",
        head: str = "logreg",
        model_kwargs: dict[str, Any] | None = None,
        batch_size: int = 32,
        cv_folds: int = 3,
        device: str = "auto",
        seed: int = 0,
    ):
        self.model = model
        self.weights = weights
        self.head = head
        self.model_kwargs = model_kwargs
        self.batch_size = batch_size
        self.cv_folds = cv_folds
        self.device = device
        self.seed = seed

    @classmethod
    def check_params(cls) -> dict[str, Any]:
        """The uniform checks run offline: the same network with random weights."""
        return {"weights": "random"}

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """`bhbench tune`: which head (each tunes its own setting by inner CV on the training patients)."""
        return {"head": trial.suggest_categorical("head", list(HEADS))}

    def _embedder(self) -> Embedder:
        from bhbench_baselines.probe.embed import Embedder

        if self.head not in HEADS:
            raise UserError(f"unknown probe head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.weights == "auto":
            raise UserError("a probe needs its weights named: imagenet (timm hub), random, or a file PATH")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise UserError(f"model_kwargs must be a JSON object, got {self.model_kwargs!r}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        return Embedder(
            self.model, self.weights, dict(self.model_kwargs or {}), self.device, self.batch_size, self.seed
        )

    def fit(self, train: TrainSet) -> FrozenProbe:
        from bhbench_baselines.handcrafted.classifiers import fit_classifier

        self._embedder_: Embedder = self._embedder()
        embedding = self._embedder_.embed(train)
        head = HEADS[self.head]
        self._head_: FittedClassifier
        self._head_, head_info = fit_classifier(
            head, dict(head.settings), embedding.matrix, train.y, train.patient, self.seed, self.cv_folds
        )
        spec = self._embedder_.spec
        self._info_ = {
            "init": self._embedder_.init,
            "model": spec.model,
            "embedding_dim": spec.dim,
            "input_size": spec.input_size,
            "normalisation": {"mean": list(spec.mean), "std": list(spec.std)},
            "parameters": self._embedder_.parameters,
            "device": self._embedder_.device.type,
            "embeddings_cache": spec.id,
            "train_embeddings_computed": embedding.computed,
            "train_embeddings_cached": len(train) - embedding.computed,
            "embed_seconds": round(embedding.seconds, 2),
            "head": head_info,
        }
        return self

    def predict_proba(self, test: TestSet) -> np.ndarray:
        if not hasattr(self, "_head_"):
            raise RuntimeError("FrozenProbe is not fitted; call fit first")
        embedding = self._embedder_.embed(test)
        self._info_["test_embeddings_computed"] = embedding.computed
        return self._head_.predict_proba(embedding.matrix, test.n_classes)

    def fit_info(self) -> dict[str, Any]:
        return dict(self._info_)


_MODELS = {  # registered name part -> (timm name, what its default weights are, the data they saw)
    "resnet50": ("resnet50", "ResNet50, timm's ImageNet-1k weights", "ImageNet-1k"),
    "vit_small": ("vit_small_patch16_224", "ViT-S/16, timm's ImageNet-21k + 1k weights", "ImageNet-21k, ImageNet-1k"),
}
_REFERENCE = "frozen-backbone linear / k-NN probing as in kaiko-ai/eva and THUNDER"

for _part, (_timm_name, _about, _data) in _MODELS.items():
    for _head, _classifier in HEADS.items():
        _name = f"probe_{_part}" + ("" if _head == "logreg" else f"_{_head}")
        _card = MethodCard(
            family="probe",
            reference=_REFERENCE,
            summary=f"{_about}, frozen; {_classifier.title} on its pooled embedding.",
            facts={"model": _timm_name, "head": _head},
            weights_data=_data,  # used with weights=imagenet (the default); none with weights=random
        )
        register(_name, FrozenProbe, card=_card, model=_timm_name, head=_head)
