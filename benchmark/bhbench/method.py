"""The plugin contract: what a method is given and what it must return.

A method sees a `TrainSet` (images plus the labels and metadata it may learn from) and a
`TestSet` (images only). Both hand out pixels through an image source that knows opaque handles,
never file names (BreaKHis names spell out class, subtype, patient and magnification) nor content
hashes (which the harness's own tables map to file names); see `bhbench.blind`.
"""

from __future__ import annotations

import copy
import inspect
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bhbench.blind import unshuffle
from bhbench.data.images import ImageStore, Size, decode, resize
from bhbench.protocol import TASK_CLASSES


class _StoredImages:
    """Pixels from a decoded-image store, addressed by key (a handle in the harness's jobs)."""

    def __init__(self, keys: Sequence[str], store: ImageStore):
        self.keys = tuple(keys)
        self._store = store

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, i: int, size: Size | None, square: bool) -> np.ndarray:
        return self._store.load(self.keys[i], size, square)

    def take(self, indices: np.ndarray) -> _StoredImages:
        return _StoredImages([self.keys[i] for i in indices], self._store)


class _EncodedImages:
    """Pixels decoded from PNG bytes on every access: no cache, used to time end-to-end FPS."""

    keys = None

    def __init__(self, blobs: Sequence[bytes]):
        self._blobs = list(blobs)

    def __len__(self) -> int:
        return len(self._blobs)

    def load(self, i: int, size: Size | None, square: bool) -> np.ndarray:
        img = decode(self._blobs[i], name=f"image {i}")
        return img if size is None else resize(img, size, square)

    def take(self, indices: np.ndarray) -> _EncodedImages:
        return _EncodedImages([self._blobs[i] for i in indices])


class _ArrayImages:
    """Pixels already in memory (decoded tensors in): used to time model FPS."""

    keys = None

    def __init__(self, arrays: Sequence[np.ndarray]):
        self._arrays = list(arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def load(self, i: int, size: Size | None, square: bool) -> np.ndarray:
        img = self._arrays[i]
        return img if size is None else resize(img, size, square)

    def take(self, indices: np.ndarray) -> _ArrayImages:
        return _ArrayImages([self._arrays[i] for i in indices])


ImageSource = _StoredImages | _EncodedImages | _ArrayImages


class ImageSet:
    """Lazy RGB uint8 images of any size. Picklable, so methods may fan out over processes."""

    def __init__(self, source: ImageSource, task: str):
        self._source = source
        self.task = task
        self.classes: tuple[str, ...] = TASK_CLASSES[task]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def cache_keys(self) -> tuple[str, ...] | None:
        """Keys for caching derived data (features), one per image; None while the harness times
        FPS, when every cache must be bypassed. In the harness's jobs these are handles: stable
        across runs and methods for the same image in the same fold, different in another fold,
        and matching nothing on disk."""
        return self._source.keys

    def __len__(self) -> int:
        return len(self._source)

    def image(self, i: int, size: Size | None = None, square: bool = False) -> np.ndarray:
        """Image i, full resolution or resized to (height, width); `square` centre-crops first."""
        return self._source.load(i, size, square)

    def batch(self, indices: Sequence[int], size: Size, square: bool = False) -> np.ndarray:
        """Images at `indices` resized to one size, stacked to (n, height, width, 3) uint8."""
        out = np.empty((len(indices), size[0], size[1], 3), np.uint8)
        for j, i in enumerate(indices):
            out[j] = self._source.load(int(i), size, square)
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.image(i) for i in range(len(self)))

    @staticmethod
    def _source_for(
        images: Sequence[np.ndarray] | None, keys: Sequence[str] | None, store: str | ImageStore | None
    ) -> ImageSource:
        if images is not None:
            return _ArrayImages(images)
        if keys is None or store is None:
            raise TypeError("give either images or keys and store")
        return _StoredImages(keys, store if isinstance(store, ImageStore) else ImageStore(Path(store)))


class TestSet(ImageSet):
    """Images to predict. Holds no labels, patients or magnifications, and their order carries
    nothing: the harness shuffles them per (run, fold) and restores its own order after."""

    __test__ = False  # not a pytest class

    def __init__(self, source: ImageSource, task: str, order: np.ndarray | None = None):
        super().__init__(source, task)
        self._order = order  # set only by TrainSet.as_test: the method's own training images

    @classmethod
    def build(
        cls,
        task: str,
        images: Sequence[np.ndarray] | None = None,
        keys: Sequence[str] | None = None,
        store: str | ImageStore | None = None,
    ) -> TestSet:
        """From in-memory RGB arrays (no caching), or from keys in an ImageStore (or its folder)."""
        return cls(cls._source_for(images, keys, store), task)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TestSet:
        """The images at `indices`, in that order."""
        return TestSet(self._source.take(np.asarray(indices, dtype=int)), self.task)

    def restore(self, rows: np.ndarray) -> np.ndarray:
        """Predictions for a set made by `TrainSet.as_test`, put back in the order of the indices
        given there. The harness's test sets keep their order secret and refuse."""
        if self._order is None:
            raise ValueError("only a TestSet made by TrainSet.as_test can be restored to its indices' order")
        return unshuffle(rows, self._order)


@dataclass(frozen=True)
class TrainMeta:
    """Per-image training metadata, aligned with the images."""

    y: np.ndarray  # int label for the task (index into `classes`)
    malignant: np.ndarray  # bool
    subtype: np.ndarray  # str, one of TASK_CLASSES["subtype"]
    magnification: np.ndarray  # int, 40/100/200/400
    patient: np.ndarray  # str patient token, for group-aware inner validation


class TrainSet(ImageSet):
    """Images to learn from, with their labels and metadata."""

    def __init__(self, source: ImageSource, task: str, meta: TrainMeta):
        super().__init__(source, task)
        self.y = meta.y
        self.malignant = meta.malignant
        self.subtype = meta.subtype
        self.magnification = meta.magnification
        self.patient = meta.patient

    @classmethod
    def build(
        cls,
        task: str,
        meta: TrainMeta,
        images: Sequence[np.ndarray] | None = None,
        keys: Sequence[str] | None = None,
        store: str | ImageStore | None = None,
    ) -> TrainSet:
        """From in-memory RGB arrays (no caching), or from keys in an ImageStore (or its folder)."""
        return cls(cls._source_for(images, keys, store), task, meta)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TrainSet:
        """The images at `indices` with their labels (for inner validation splits)."""
        idx = np.asarray(indices, dtype=int)
        source = self._source.take(idx)
        meta = TrainMeta(
            self.y[idx], self.malignant[idx], self.subtype[idx], self.magnification[idx], self.patient[idx]
        )
        return TrainSet(source, self.task, meta)

    def as_test(self, indices: Sequence[int] | np.ndarray | None = None) -> TestSet:
        """The same images (or a subset) without labels, for validation inside `fit`. Like the
        harness's test sets they come in a fresh random order, so validation runs the code path
        that is scored; `test.restore(proba)` gives the rows back in the order of `indices`."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=int)
        order = np.random.default_rng(secrets.randbits(64)).permutation(len(idx))
        return TestSet(self._source.take(idx[order]), self.task, order)


class Method:
    """Base class of every method. Subclasses store constructor arguments as attributes of the same
    name and do nothing else in `__init__` (scikit-learn's rule), so params can be listed, set from
    the CLI, stored in records and cloned. The constructor's defaults are the class's; a name
    registered with defaults of its own (`register(name, cls, backbone="resnet50")`) is created
    with those, and its instances store every effective value, so records and `clone` see them.

    A parameter's annotation declares the values it allows (`bhbench.constraints`: types, `Literal`
    choices, `Annotated[int, Interval(1, None)]`); the harness checks `--set` values against it
    before any job starts, so `fit` need not check them again. What `fit` learns is stored in
    attributes named with a trailing underscore (`model_`), scikit-learn's convention, and
    `predict_proba` starts with `check_is_fitted(self)`.

    Required: `fit` and `predict_proba`. Optional hooks, each with a default meaning "not used":
    `predict_aux`, `fit_info`, `check_params`, `search_space`, `transductive`.
    """

    # A method's name, family and reference live in its registry entry: one class may have many names.
    tasks: ClassVar[tuple[str, ...]] = ("binary", "subtype")
    # An image's prediction must not depend on the other test images (their order or which are
    # there): `bhbench run` predicts a random sample again in another order and subset on every
    # fold and fails the record when they disagree. A method that uses the test set as a whole on
    # purpose sets `transductive = True`: it skips that check and is ranked in its own section.
    transductive: ClassVar[bool] = False
    # Optional classmethod `search_space(cls, trial) -> dict` making the method tunable by
    # `bhbench tune`: constructor parameters drawn from the optuna `trial`. None: not tunable.
    search_space: ClassVar[Callable[[Any], dict[str, Any]] | None] = None

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        """Constructor parameters and their defaults, read from the constructor's signature."""
        return {p.name: p.default for p in parameters(inspect.signature(cls))}

    @classmethod
    def param_names(cls) -> list[str]:
        return list(cls.param_defaults())

    @classmethod
    def check_params(cls) -> dict[str, Any]:
        """Optional: small settings (few epochs, small input) under which `bhbench check` fits the
        method on its tiny set within the time budget. Default: none, the defaults are quick."""
        return {}

    def get_params(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in self.param_names()}

    def set_params(self, **params: Any) -> Method:
        valid = set(self.param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; it has {sorted(valid)}")
            setattr(self, key, value)
        return self

    def clone(self) -> Method:
        """A new, unfitted instance with the same parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def fit(self, train: TrainSet) -> Method:
        raise NotImplementedError

    def predict_proba(self, test: TestSet) -> np.ndarray:
        """Array of shape (len(test), test.n_classes), rows summing to one."""
        raise NotImplementedError

    def predict_aux(self, test: TestSet) -> dict[str, np.ndarray]:
        """Optional: extra heads scored by the harness, e.g. {"magnification": (n, 4)
        probabilities}, under the same rules as `predict_proba`. Default: none."""
        return {}

    def fit_info(self) -> dict[str, Any]:
        """Optional: what fitting decided and the record should keep (chosen hyperparameters,
        parameter count, training profile...). JSON-serialisable. Default: nothing."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def parameters(signature: inspect.Signature) -> list[inspect.Parameter]:
    """A method class's constructor parameters, from `inspect.signature(cls)` (its `__init__`'s, or the
    `__signature__` a class composing its parameters from catalogues sets): without *args, **kwargs."""
    return [p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


class NotFittedError(RuntimeError):
    """`predict_proba` (or another method needing what `fit` learns) called before `fit`."""


def check_is_fitted(method: Method) -> None:
    """Raise NotFittedError unless `fit` has stored learned state: an attribute whose name ends with
    an underscore (`model_`, `prior_`; scikit-learn's convention; parameters never end so)."""
    if not any(k.endswith("_") and not k.startswith("__") for k in vars(method)):
        raise NotFittedError(f"{type(method).__name__} is not fitted: call fit before predicting")
