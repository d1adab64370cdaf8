"""The run record: what one (dataset, protocol, method + parameters, fold) run was and measured,
as frozen dataclasses with one JSON round-trip, `RunRecord.from_json` / `RunRecord.to_json`.

The JSON is the format of every committed record, so the mapping is exact and strict. Every key is
required unless its field is `optional()`: a key a record may lack (a failed run has no `warnings`
and no `predictions`; only the first fold times throughput), read as None and left out when None.
A missing or unknown key, or a value of the wrong type, is a DataError naming the key, so a
misspelt key in an edited record is reported rather than ignored. Numbers keep their JSON type (an
integer in a float field stays an integer), so a record read and written again has the same bytes.
Method-provided values (parameters, `fit_info`, tuning details) are free-form JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import reprlib
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from bhbench import util
from bhbench.errors import DataError, UserError
from bhbench.metric import METRICS
from bhbench.protocol import Protocol

SCHEMA = 1
_OPTIONAL = "optional"


def optional() -> Any:
    """A field whose key the JSON may lack: None when absent, left out when None."""
    return field(default=None, metadata={_OPTIONAL: True})


T = TypeVar("T", bound="RecordPart")


class RecordPart:
    """A part of a record (a dataclass), with its JSON round-trip."""

    @classmethod
    def from_json(cls: type[T], doc: Any) -> T:
        return _dataclass(cls, doc, "")

    def to_json(self) -> dict[str, Any]:
        return _encode(self)


@dataclass(frozen=True)
class DatasetInfo(RecordPart):
    id: str  # name and fingerprint prefix: `synthetic-fd7a3515`
    name: str
    fingerprint: str  # of the manifest (file names and content keys)
    images: int
    patients: int
    synthetic: bool
    complete: bool | None  # the whole of BreaKHis_v1; None for synthetic data
    skipped: tuple[str, ...]  # bad files left out with --skip-bad


@dataclass(frozen=True)
class SplitInfo(RecordPart):
    kind: str  # official | patient | image-kfold
    source: str
    hash: str  # of the split file's folds
    file: str  # the split file, in <results>/<dataset>/splits/
    fold: int
    leaky: bool
    leaked_patients: tuple[str, ...]  # patient tokens on both sides of this fold
    n_train: int
    n_test: int
    fold_lines_without_image: int
    missing_classes: dict[str, tuple[str, ...]]  # classes absent from a training part ("all", "40X"...)


@dataclass(frozen=True)
class CodeInfo(RecordPart):
    """The code that made the record (`results.code_fingerprint`)."""

    hash: str
    files: tuple[str, ...]
    harness: str  # bhbench's version


def params_hash(params: dict[str, Any]) -> str:
    """Names one parameter set of a method: its records' folder and the row it makes."""
    return util.digest(params)[:10]


@dataclass(frozen=True)
class MethodInfo(RecordPart):
    name: str
    family: str
    reference: str
    params: dict[str, Any]  # every constructor parameter
    params_hash: str
    code: CodeInfo | None
    tuned: dict[str, Any] | None  # how the parameters were tuned, when they were
    fit_info: Any  # what the method's fit_info() returned; a list, one per part, in the ms regime
    transductive: bool
    # The card's parameter defaults when the run was made: the leaderboard names a row's non-default
    # parameters from the record alone, whatever plugins are installed where it is built.
    defaults: dict[str, Any] | None = optional()
    weights_data: str | None = optional()  # what pretrained weights were trained on (the card's weights_data)

    @property
    def code_hash(self) -> str | None:
        return self.code.hash if self.code else None

    @property
    def first_fit_info(self) -> dict[str, Any]:
        """fit_info as a dict (the first part's in the ms regime), empty when the method gave none."""
        info = self.fit_info[0] if isinstance(self.fit_info, list) and self.fit_info else self.fit_info
        return info if isinstance(info, dict) else {}


@dataclass(frozen=True)
class StainTarget(RecordPart):
    """The stain normalisation target of a fold (`bhbench.stain`), fitted on its training images."""

    method: str  # macenko | reinhard
    digest: str  # of params: part of the normalised images' cache keys
    images: int  # training images sampled into the reference
    params: dict[str, Any]  # Macenko: stain_matrix, max_concentrations; Reinhard: LAB means, stds


@dataclass(frozen=True)
class Perturbation(RecordPart):
    """A robustness record's test-time stain shift (`bhbench.perturb`): each test image is predicted
    at every strength, by one fit; the predictions file has a `strength` column."""

    space: str  # hed
    strengths: tuple[float, ...]
    seed: int


@dataclass(frozen=True)
class ContractCheck(RecordPart):
    """The per-image check: a sample of test images predicted again in another order and subset."""

    checked: int
    max_diff: float
    tolerance: float
    seconds: float


@dataclass(frozen=True)
class Timing(RecordPart):
    fit_seconds: float
    predict_seconds: float
    # Throughput, measured on the first fold only.
    fps_model: float | None = optional()
    fps_end_to_end: float | None = optional()
    fps_images: int | None = optional()
    threads: int | None = optional()


def _scores_fields() -> list[tuple]:
    """A number per declared metric (NaN when undefined); one a record may lack is optional: a
    metric of one task, of methods that predict magnification, or declared after the record."""
    always = [(m.name, float) for m in METRICS if m.in_every_record]
    sometimes = [(m.name, float | None, optional()) for m in METRICS if not m.in_every_record]
    return [*always, ("n_images", int), ("n_patients", int), *sometimes]


# The metrics of one set of test images, a field per declaration of `bhbench.metric.METRICS` (built
# from them, so a metric is declared in one place and a record holds exactly what is declared).
Scores = dataclasses.make_dataclass("Scores", _scores_fields(), bases=(RecordPart,), frozen=True)
Scores.__module__ = __name__  # where pickle (a worker's reply) finds it


@dataclass(frozen=True)
class Metrics(RecordPart):
    overall: Scores
    by_magnification: dict[str, Scores]  # "40", "100", ...

    @property
    def headline(self) -> float:
        """The leaderboard's headline: the mean of the per-magnification patient recognition rates
        (Bayramoglu et al.'s definition); `overall.patient_rr` is the patient-pooled rate."""
        return sum(m.patient_rr for m in self.by_magnification.values()) / len(self.by_magnification)


@dataclass(frozen=True)
class Environment(RecordPart):
    versions: dict[str, str]  # python, zlib, bhbench and the packages that can move the numbers
    git_commit: str | None
    platform: str
    sandbox: str  # the worker launcher
    lock: str | None = optional()  # hash of the requirements.lock this environment matched exactly
    # The hardware float sums depend on: deep training's kernels are picked by the CPU's vector
    # instructions and split over the threads, so a deep record reproduces bit for bit only where both
    # are the same (`bhbench reproduce` reruns with the record's threads and names another CPU).
    cpu: str | None = optional()  # model and widest vector instructions, e.g. "Intel(R) Xeon(R) ... (avx512)"
    threads: int | None = optional()  # the worker's thread budget (`bhbench.util.thread_budget`)


@dataclass(frozen=True)
class TimeLimit(RecordPart):
    """The wall-clock limit a job ran under (`bhbench.limits`)."""

    seconds: float | None  # None: no limit (--timeout 0)
    source: Literal["family default", "given"]  # the method family's default, or --timeout / timeout=

    def origin(self, family: str) -> str:
        """Where the limit comes from, in words."""
        if self.source == "given":
            return "--timeout"
        return f"the default for the {family} family; --timeout SECONDS changes it"


@dataclass(frozen=True)
class PredictionsFile(RecordPart):
    file: str  # beside the record
    sha256: str


@dataclass(frozen=True)
class RunRecord(RecordPart):
    """One fold of one method. A successful record has metrics, timing and predictions; a failed one
    has an error instead (and no warnings or predictions)."""

    status: Literal["ok", "failed"]
    error: str | None
    created: str  # ISO 8601, UTC
    dataset: DatasetInfo
    protocol: Protocol
    split: SplitInfo
    method: MethodInfo
    seed: int
    contract: ContractCheck | None  # None for transductive methods and failed runs
    metrics: Metrics | None
    timing: Timing | None
    environment: Environment
    warnings: tuple[str, ...] | None = optional()  # library warnings, once each
    time_limit: TimeLimit | None = optional()  # None in records made before limits were recorded
    predictions: PredictionsFile | None = optional()
    stain_target: StainTarget | None = optional()  # with --stain-norm: the fold's target
    perturbation: Perturbation | None = optional()  # a robustness record's (its metrics: strength 0)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_json(cls, doc: Any) -> RunRecord:
        """The record of a JSON document; DataError naming the first key that is wrong."""
        body = dict(_expect(dict, doc, "record"))
        if "schema" not in body:
            raise DataError("missing key schema")
        schema = body.pop("schema")
        if schema != SCHEMA:
            raise DataError(f"schema {schema!r}; this bhbench reads schema {SCHEMA}")
        record = _dataclass(cls, body, "")
        lacking = [k for k in ("metrics", "timing", "predictions") if getattr(record, k) is None]
        if record.ok and lacking:
            raise DataError(f"status 'ok' without {', '.join(lacking)}")
        if not record.ok and not record.error:
            raise DataError("status 'failed' without an error")
        return record

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **_encode(self)}


# --- the mapping, driven by the dataclasses' type hints ------------------------------------------

_KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "an object",
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _expect(kind: type, value: Any, where: str) -> Any:
    if kind is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        fits = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not fits:
        raise DataError(f"{where}: expected {_KINDS[kind]}, found {reprlib.repr(value)}")
    return value


def _decode(kind: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, UnionType):  # only `X | None`
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _decode(inner, value, where)
    if dataclasses.is_dataclass(kind):
        return _dataclass(kind, value, where)
    if origin is tuple:
        return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(_expect(list, value, where)))
    if origin is dict:
        return {k: _decode(args[1], v, f"{where}.{k}") for k, v in _expect(dict, value, where).items()}
    if origin is Literal:
        if value not in args:
            raise DataError(f"{where}: {reprlib.repr(value)} is not one of {', '.join(map(repr, args))}")
        return value
    return _expect(kind, value, where)


def _dataclass(cls: Any, value: Any, where: str) -> Any:
    doc = _expect(dict, value, where or "record")
    prefix = f"{where}." if where else ""
    fields = dataclasses.fields(cls)
    # A protocol's id is derived from its fields; the JSON carries it for readers of the file.
    derived = ["id"] if cls is Protocol else []
    known = {f.name for f in fields} | set(derived)
    for key in doc:
        if key not in known:
            raise DataError(f"unknown key {prefix}{key}")
    for key in [*(f.name for f in fields if not f.metadata.get(_OPTIONAL)), *derived]:
        if key not in doc:
            raise DataError(f"missing key {prefix}{key}")
    hints = _hints(cls)
    values = {f.name: _decode(hints[f.name], doc[f.name], f"{prefix}{f.name}") for f in fields if f.name in doc}
    try:
        built = cls(**values)
    except UserError as exc:  # the dataclass's own check (a protocol's task, split...)
        raise DataError(f"{where}: {exc}") from None
    if cls is Protocol and doc["id"] != built.id:
        raise DataError(f"{prefix}id: {doc['id']!r} does not match the protocol's fields ({built.id!r})")
    return built


def _encode(value: Any) -> Any:
    if isinstance(value, Protocol):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None or not f.metadata.get(_OPTIONAL):
                out[f.name] = _encode(item)
        return out
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value
