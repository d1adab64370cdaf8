"""The 24 hand-crafted baselines: six descriptors x four classifiers, registered as
`<descriptor>_<classifier>` (`lbp_1nn`, `clbp_qda`, `pftas_svm`, `orb_rf`, ...).

Every method's parameters are its descriptor's parameters, its classifier's settings, `seed` and
`cv_folds`, so `--set` can change any of them and the record stores all of them. The classes are
generated from the two catalogues rather than written out 24 times; each gets a real constructor
signature (what `Method.param_names` and the CLI read) and a module-level name (so it pickles).

Classifiers run with one BLAS thread: the matrices are small, and on a busy machine OpenBLAS
threads spinning against each other made a QDA fit 40x slower (20 s instead of 0.5 s).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from bhbench import Method, TestSet, TrainSet, register
from bhbench.errors import UserError
from bhbench_baselines.handcrafted.classifiers import CLASSIFIERS, Classifier, FittedClassifier, fit_classifier
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS, Descriptor, DescriptorSpec
from bhbench_baselines.handcrafted.features import extract

COMMON = {"seed": 0, "cv_folds": 3}
REFERENCE = "Spanhol et al., IEEE TBME 2016"


class HandcraftedMethod(Method):
    """A descriptor's (cached) features fed to a classifier tuned on the training patients."""

    descriptor: ClassVar[Descriptor]
    classifier: ClassVar[Classifier]
    seed: int
    cv_folds: int
    _model: FittedClassifier
    _info: dict[str, Any]

    def __init__(self, **params: Any):
        bound = inspect.signature(type(self).__init__).bind(self, **params)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    def spec(self) -> DescriptorSpec:
        """What this instance's descriptor computes (validates the descriptor parameters)."""
        return self.descriptor.spec(**{k: getattr(self, k) for k in self.descriptor.defaults})

    def fit(self, train: TrainSet) -> HandcraftedMethod:
        for name, lowest in (("seed", 0), ("cv_folds", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                raise UserError(f"{self.name}: {name}={value!r}, expected an integer >= {lowest}")
        spec = self.spec()
        X = extract(train, [spec]).features[0]
        settings = {k: getattr(self, k) for k in self.classifier.settings}
        with threadpool_limits(1):  # see module docstring
            self._model, info = fit_classifier(
                self.classifier, settings, X, train.y, train.patient, self.seed, self.cv_folds
            )
        self._info = {"descriptor": spec.as_dict(), "dim": spec.dim, **info}
        return self

    def predict_proba(self, test: TestSet) -> np.ndarray:
        if not hasattr(self, "_model"):
            raise RuntimeError(f"{self.name}: call fit before predict_proba")
        X = extract(test, [self.spec()]).features[0]
        with threadpool_limits(1):
            return self._model.predict_proba(X, test.n_classes)

    def fit_info(self) -> dict[str, Any]:
        return dict(getattr(self, "_info", {}))


def _define(descriptor: Descriptor, classifier: Classifier) -> type[HandcraftedMethod]:
    defaults = {**descriptor.defaults, **classifier.settings, **COMMON}
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    )

    def __init__(self: HandcraftedMethod, **params: Any) -> None:
        HandcraftedMethod.__init__(self, **params)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    dim = descriptor.dim(descriptor.defaults)
    class_name = f"{descriptor.name.capitalize()}{classifier.name.upper()}"
    cls = type(
        class_name,
        (HandcraftedMethod,),
        {
            "__init__": __init__,
            "__module__": __name__,
            "__qualname__": class_name,
            "__doc__": f"{descriptor.title} [{dim}] with {classifier.title}.",
            "descriptor": descriptor,
            "classifier": classifier,
        },
    )
    name = f"{descriptor.name}_{classifier.name}"
    return register(name, family="handcrafted", reference=f"{REFERENCE}; {descriptor.reference}", dim=dim)(cls)


for _descriptor in DESCRIPTORS.values():
    for _classifier in CLASSIFIERS.values():
        _cls = _define(_descriptor, _classifier)
        globals()[_cls.__name__] = _cls
