"""The 24 hand-crafted baselines: six descriptors x four classifiers, registered as
`<descriptor>_<classifier>` (`lbp_1nn`, `clbp_qda`, `pftas_svm`, `orb_rf`, ...).

A method's parameters are its descriptor's parameters, its classifier's settings, `seed` and
`cv_folds`, so `--set` can change any of them and the record stores all of them. Each
descriptor x classifier pair is a one-line class naming the two; its constructor signature (defaults
and the annotations declaring what each parameter allows) is composed from their catalogues. A
variant with other defaults is one more `register(...)` line, e.g.
`register("lbp16_svm", LbpSVM, P=16, R=2, card=_card(LbpSVM))`.

Classifiers run with one BLAS thread: the matrices are small, and on a busy machine OpenBLAS
threads spinning against each other made a QDA fit 40x slower (20 s instead of 0.5 s).
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, ClassVar

import numpy as np

from bhbench import Interval, Method, MethodCard, TestSet, TrainSet, check_is_fitted, register
from bhbench_baselines.handcrafted.classifiers import CLASSIFIERS, Classifier, FittedClassifier
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS, Descriptor, DescriptorSpec

COMMON = {  # name -> (default, annotation)
    "seed": (0, Annotated[int, Interval(0, None)]),
    "cv_folds": (3, Annotated[int, Interval(2, None)]),  # inner folds, grouped by patient
}
REFERENCE = "Spanhol et al., IEEE TBME 2016"


class HandcraftedMethod(Method):
    """A descriptor's (cached) features fed to a classifier tuned on the training patients.
    Subclasses name the pair: `class LbpSVM(HandcraftedMethod, descriptor="lbp", classifier="svm")`."""

    descriptor: ClassVar[Descriptor]
    classifier: ClassVar[Classifier]
    seed: int
    cv_folds: int
    model_: FittedClassifier
    info_: dict[str, Any]

    def __init_subclass__(cls, descriptor: str, classifier: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.descriptor, cls.classifier = DESCRIPTORS[descriptor], CLASSIFIERS[classifier]
        if cls.classifier.space is None:
            cls.search_space = None  # nothing to tune (1-NN)
        declared = {
            **{k: (v, cls.descriptor.annotations.get(k)) for k, v in cls.descriptor.defaults.items()},
            **{k: (v, cls.classifier.annotations.get(k)) for k, v in cls.classifier.settings.items()},
            **COMMON,
        }
        keyword = inspect.Parameter.KEYWORD_ONLY
        cls.__signature__ = inspect.Signature(  # what `param_defaults` and the cards read
            [inspect.Parameter(k, keyword, default=d, annotation=a or inspect.Parameter.empty)
             for k, (d, a) in declared.items()]
        )  # fmt: skip

    def __init__(self, **params: Any):
        defaults = self.param_defaults()
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise TypeError(f"unexpected parameter(s) {', '.join(unknown)}")
        for name, value in {**defaults, **params}.items():
            setattr(self, name, value)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:  # type: ignore[override]
        """The classifier's settings, drawn from the optuna trial (`bhbench tune`)."""
        assert cls.classifier.space is not None  # 1-NN classes have search_space = None
        return cls.classifier.space(trial)

    def spec(self) -> DescriptorSpec:
        """What this instance's descriptor computes."""
        return self.descriptor.spec(**{k: getattr(self, k) for k in self.descriptor.defaults})

    def fit(self, train: TrainSet) -> HandcraftedMethod:
        # Imported here: OpenCV, the feature cache and threadpoolctl are not needed to list methods.
        from threadpoolctl import threadpool_limits

        from bhbench_baselines.handcrafted.classifiers import fit_classifier
        from bhbench_baselines.handcrafted.features import extract

        spec = self.spec()
        X = extract(train, [spec]).features[0]
        settings = {k: getattr(self, k) for k in self.classifier.settings}
        with threadpool_limits(1):  # see module docstring
            self.model_, info = fit_classifier(
                self.classifier, settings, X, train.y, train.patient, self.seed, self.cv_folds
            )
        self.info_ = {"descriptor": spec.as_dict(), "dim": spec.dim, **info}
        return self

    def predict_proba(self, test: TestSet) -> np.ndarray:
        check_is_fitted(self)
        from threadpoolctl import threadpool_limits

        from bhbench_baselines.handcrafted.features import extract

        X = extract(test, [self.spec()]).features[0]
        with threadpool_limits(1):
            return self.model_.predict_proba(X, test.n_classes)

    def fit_info(self) -> dict[str, Any]:
        return dict(getattr(self, "info_", {}))


def _card(cls: type[HandcraftedMethod]) -> MethodCard:
    d, c = cls.descriptor, cls.classifier
    dim = d.dim(d.defaults)
    return MethodCard(
        family="handcrafted",
        reference=f"{REFERENCE}; {d.reference}",
        summary=f"{d.title} [{dim}] with {c.title}.",
        facts={"dim": dim},
    )


# fmt: off
class Lbp1NN(HandcraftedMethod, descriptor="lbp", classifier="1nn"): ...
class LbpQDA(HandcraftedMethod, descriptor="lbp", classifier="qda"): ...
class LbpSVM(HandcraftedMethod, descriptor="lbp", classifier="svm"): ...
class LbpRF(HandcraftedMethod, descriptor="lbp", classifier="rf"): ...
class Clbp1NN(HandcraftedMethod, descriptor="clbp", classifier="1nn"): ...
class ClbpQDA(HandcraftedMethod, descriptor="clbp", classifier="qda"): ...
class ClbpSVM(HandcraftedMethod, descriptor="clbp", classifier="svm"): ...
class ClbpRF(HandcraftedMethod, descriptor="clbp", classifier="rf"): ...
class Lpq1NN(HandcraftedMethod, descriptor="lpq", classifier="1nn"): ...
class LpqQDA(HandcraftedMethod, descriptor="lpq", classifier="qda"): ...
class LpqSVM(HandcraftedMethod, descriptor="lpq", classifier="svm"): ...
class LpqRF(HandcraftedMethod, descriptor="lpq", classifier="rf"): ...
class Glcm1NN(HandcraftedMethod, descriptor="glcm", classifier="1nn"): ...
class GlcmQDA(HandcraftedMethod, descriptor="glcm", classifier="qda"): ...
class GlcmSVM(HandcraftedMethod, descriptor="glcm", classifier="svm"): ...
class GlcmRF(HandcraftedMethod, descriptor="glcm", classifier="rf"): ...
class Orb1NN(HandcraftedMethod, descriptor="orb", classifier="1nn"): ...
class OrbQDA(HandcraftedMethod, descriptor="orb", classifier="qda"): ...
class OrbSVM(HandcraftedMethod, descriptor="orb", classifier="svm"): ...
class OrbRF(HandcraftedMethod, descriptor="orb", classifier="rf"): ...
class Pftas1NN(HandcraftedMethod, descriptor="pftas", classifier="1nn"): ...
class PftasQDA(HandcraftedMethod, descriptor="pftas", classifier="qda"): ...
class PftasSVM(HandcraftedMethod, descriptor="pftas", classifier="svm"): ...
class PftasRF(HandcraftedMethod, descriptor="pftas", classifier="rf"): ...


register("lbp_1nn", Lbp1NN, card=_card(Lbp1NN))
register("lbp_qda", LbpQDA, card=_card(LbpQDA))
register("lbp_svm", LbpSVM, card=_card(LbpSVM))
register("lbp_rf", LbpRF, card=_card(LbpRF))
register("clbp_1nn", Clbp1NN, card=_card(Clbp1NN))
register("clbp_qda", ClbpQDA, card=_card(ClbpQDA))
register("clbp_svm", ClbpSVM, card=_card(ClbpSVM))
register("clbp_rf", ClbpRF, card=_card(ClbpRF))
register("lpq_1nn", Lpq1NN, card=_card(Lpq1NN))
register("lpq_qda", LpqQDA, card=_card(LpqQDA))
register("lpq_svm", LpqSVM, card=_card(LpqSVM))
register("lpq_rf", LpqRF, card=_card(LpqRF))
register("glcm_1nn", Glcm1NN, card=_card(Glcm1NN))
register("glcm_qda", GlcmQDA, card=_card(GlcmQDA))
register("glcm_svm", GlcmSVM, card=_card(GlcmSVM))
register("glcm_rf", GlcmRF, card=_card(GlcmRF))
register("orb_1nn", Orb1NN, card=_card(Orb1NN))
register("orb_qda", OrbQDA, card=_card(OrbQDA))
register("orb_svm", OrbSVM, card=_card(OrbSVM))
register("orb_rf", OrbRF, card=_card(OrbRF))
register("pftas_1nn", Pftas1NN, card=_card(Pftas1NN))
register("pftas_qda", PftasQDA, card=_card(PftasQDA))
register("pftas_svm", PftasSVM, card=_card(PftasSVM))
register("pftas_rf", PftasRF, card=_card(PftasRF))
# fmt: on
