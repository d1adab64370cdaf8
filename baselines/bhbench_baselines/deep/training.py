"""The one training loop and the inference every deep method uses: device and recipe choice,
patient-grouped validation, augmentation, mixed precision on CUDA, early stopping."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from bhbench import TestSet, TrainSet
from bhbench.errors import UserError
from bhbench.util import thread_budget
from bhbench_baselines.deep.augment import augment
from bhbench_baselines.deep.networks import backbones_of, pretrained_cfg
from bhbench_baselines.deep.recipes import Recipe

VALIDATION_FOLDS = 5  # one fold of a patient-grouped 5-fold split (20% of patients) validates


class Head(NamedTuple):
    """One output head: its training labels, its number of outputs and its weight in the loss."""

    labels: np.ndarray
    outputs: int
    weight: float


class TrainableMethod(Protocol):
    """What the loop needs from a deep method (see methods.py)."""

    paper_recipe: ClassVar[Recipe]
    quick_recipe: ClassVar[Recipe]
    square: ClassVar[bool]
    recipe: str
    device: str
    seed: int

    def recipe_overrides(self) -> dict[str, Any]: ...

    def build_network(self, n_classes: int, recipe: Recipe) -> nn.Module: ...

    def targets(self, train: TrainSet) -> dict[str, Head]: ...

    def describe(self, recipe: Recipe) -> dict[str, Any]: ...

    def init(self, recipe: Recipe) -> str: ...


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device='cuda' but torch sees no CUDA device; use device=cpu or device=auto")
    if requested not in ("cpu", "cuda"):
        raise UserError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return torch.device(requested)


def choose_recipe(requested: str, device: torch.device, paper: Recipe, quick: Recipe) -> tuple[Recipe, str]:
    """The recipe and why it was chosen (stored in the record, shown in the run output)."""
    if requested == "auto":
        if paper is quick:
            return quick, f"auto: {quick.name} is the method's only recipe"
        if device.type == "cuda":
            return paper, "auto: a CUDA device is available, so the paper's recipe"
        return quick, "auto: no CUDA device, so the quick recipe sized for a 2-core CPU"
    return {paper.name: paper, quick.name: quick}[requested], "set by the user"  # declared by the method


def resolve_recipe(method: TrainableMethod, device: torch.device) -> tuple[Recipe, str]:
    """The method's recipe for `device` with the user's overrides (epochs=, lr=...; their ranges are
    declared by the methods' signatures and checked before any job starts), and why."""
    base, reason = choose_recipe(method.recipe, device, method.paper_recipe, method.quick_recipe)
    return replace(base, **method.recipe_overrides()), reason


@dataclass(frozen=True)
class Inputs:
    """How stored images become network input: square resize, scaling, normalisation, device."""

    size: int
    square: bool  # centre-crop to a square before resizing (else the aspect ratio is not kept)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: torch.device

    @property
    def memory_format(self) -> torch.memory_format:
        # channels-last is what cuDNN's mixed-precision kernels want; on CPU it did not help here.
        return torch.channels_last if self.device.type == "cuda" else torch.contiguous_format

    def tensor(self, images: TrainSet | TestSet, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        batch = images.batch(indices, (self.size, self.size), square=self.square)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=self.memory_format)


def normalisation(net: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The backbone's own mean and std (what pretrained weights expect), else ImageNet's."""
    found = backbones_of(net)
    cfg = pretrained_cfg(found[0]) if found else {}
    return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))


@dataclass
class Fitted:
    net: nn.Module
    inputs: Inputs
    batch_size: int
    heads: dict[str, int]  # head name -> number of outputs
    info: dict[str, Any]


def logger(name: str) -> Callable[[str], None]:
    return lambda message: print(f"[{name}] {message}", file=sys.stderr, flush=True)


def fit(method: TrainableMethod, train: TrainSet) -> Fitted:
    """Build the method's network and train it on `train` with the chosen recipe."""
    started = time.perf_counter()
    log = logger(type(method).__name__)
    device = resolve_device(method.device)
    recipe, reason = resolve_recipe(method, device)
    init = method.init(recipe)  # before any work: the paper recipe refuses random weights
    if device.type == "cpu":
        torch.set_num_threads(thread_budget())
    torch.manual_seed(method.seed)  # network initialisation; CUDA generators included
    net = method.build_network(train.n_classes, recipe)
    mean, std = normalisation(net)
    inputs = Inputs(recipe.input_size, method.square, mean, std, device)
    net = net.to(device).to(memory_format=inputs.memory_format)
    n_params = sum(p.numel() for p in net.parameters())
    log(
        f"recipe {recipe.name} ({reason}); {n_params / 1e6:.1f} M parameters; {device.type}, "
        f"{torch.get_num_threads()} threads; input {recipe.input_size}x{recipe.input_size}; "
        f"{len(train)} training images"
    )
    targets = method.targets(train)
    loop = _train(net, train, targets, recipe, inputs, method.seed, log)
    info = {
        "recipe": recipe.name,
        "recipe_reason": reason,
        "init": init,
        "device": device.type,
        "mixed_precision": device.type == "cuda",
        "threads": torch.get_num_threads(),
        "input_size": recipe.input_size,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "max_epochs": recipe.max_epochs,
        "parameters": n_params,
        "backbone_parameters": sum(p.numel() for b in backbones_of(net) for p in b.parameters()),
        **method.describe(recipe),
        **loop,
        "fit_seconds": round(time.perf_counter() - started, 1),
    }
    heads = {name: head.outputs for name, head in targets.items()}
    return Fitted(net, inputs, recipe.batch_size, heads, info)


def validation_split(patients: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Training and validation indices with no patient in both, classes kept in proportion."""
    idx = np.arange(len(y))
    n_patients = len(np.unique(patients))
    if n_patients < VALIDATION_FOLDS:
        return idx, idx[:0], f"none: {n_patients} training patients, {VALIDATION_FOLDS} needed"
    if np.unique(y, return_counts=True)[1].max() < VALIDATION_FOLDS:  # the splitter needs one class this large
        return idx, idx[:0], f"none: fewer than {VALIDATION_FOLDS} training images in every class"
    splitter = StratifiedGroupKFold(VALIDATION_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer patients than folds is fine for one split
        warnings.simplefilter("ignore", UserWarning)
        fit_idx, val_idx = next(splitter.split(idx, y, patients))
    return fit_idx, val_idx, f"{len(np.unique(patients[val_idx]))} of {n_patients} training patients"


def make_optimizer(net: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params, lr, decay = net.parameters(), recipe.lr, recipe.weight_decay
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=decay)


def _batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    if len(batches) > 1 and len(batches[-1]) == 1:  # batch norm cannot train on a single image
        batches.pop()
    return batches


def objective(
    logits: dict[str, torch.Tensor], targets: dict[str, tuple[torch.Tensor, float]], idx: np.ndarray
) -> torch.Tensor:
    """Weighted sum of the heads' cross-entropies; a head weighted 0 does not enter at all."""
    terms = [w * F.cross_entropy(logits[h].float(), t[idx]) for h, (t, w) in targets.items() if w]
    return torch.stack(terms).sum()


def _train(
    net: nn.Module,
    train: TrainSet,
    targets: dict[str, Head],
    recipe: Recipe,
    inputs: Inputs,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    device = inputs.device
    amp = device.type == "cuda"
    fit_idx, val_idx, validation = validation_split(train.patient, train.y, seed)
    on_device = {h: (torch.as_tensor(t.labels, dtype=torch.long, device=device), t.weight) for h, t in targets.items()}
    optimizer = make_optimizer(net, recipe)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.1, patience=recipe.plateau_patience)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    order_rng = np.random.default_rng(seed)
    aug_rng = torch.Generator().manual_seed(seed)
    best_loss, best_epoch, best_bacc, best_state = math.inf, 0, None, None
    history: list[dict[str, float | None]] = []
    epoch = 0
    for epoch in range(1, recipe.max_epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = order_rng.permutation(fit_idx)
        total, seen = 0.0, 0
        for idx in _batches(order, recipe.batch_size):
            x = augment(inputs.tensor(train, idx), recipe, aug_rng)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                loss = objective(net(x), on_device, idx)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item() * len(idx)
            seen += len(idx)
        train_loss, train_seconds = total / max(seen, 1), time.perf_counter() - t0
        val_loss, val_bacc = _evaluate(net, train, val_idx, on_device, inputs, recipe.batch_size)
        history.append(
            {
                "train_loss": round(train_loss, 4),
                "val_loss": None if val_loss is None else round(val_loss, 4),
                "train_images": seen,
                "train_seconds": round(train_seconds, 3),
            }
        )
        plateau.step(train_loss if val_loss is None else val_loss)
        if val_loss is None:  # nothing to select on: the last epoch is kept
            best_epoch = epoch
        elif val_loss < best_loss:
            best_loss, best_epoch, best_bacc = val_loss, epoch, val_bacc
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        shown = "" if val_loss is None else f", val loss {val_loss:.3f}, val balanced acc {val_bacc:.3f}"
        log(
            f"epoch {epoch}/{recipe.max_epochs}: train loss {train_loss:.3f}{shown}, "
            f"lr {optimizer.param_groups[0]['lr']:.0e} ({time.perf_counter() - t0:.0f} s)"
        )
        if epoch - best_epoch >= recipe.stop_patience:
            log(f"early stop: no better validation loss since epoch {best_epoch}")
            break
    if best_state is not None and best_epoch != epoch:
        net.load_state_dict(best_state)
    return {
        "validation": validation,
        "train_images": int(len(fit_idx)),
        "val_images": int(len(val_idx)),
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "best_val_loss": None if best_state is None else round(best_loss, 4),
        "best_val_balanced_accuracy": None if best_bacc is None else round(best_bacc, 4),
        "history": history,
    }


def _evaluate(
    net: nn.Module,
    train: TrainSet,
    val_idx: np.ndarray,
    targets: dict[str, tuple[torch.Tensor, float]],
    inputs: Inputs,
    batch_size: int,
) -> tuple[float | None, float | None]:
    """Validation loss (the weighted training objective) and balanced accuracy of the class head."""
    if not len(val_idx):
        return None, None
    logits = _forward(net, train, val_idx, inputs, batch_size)
    with torch.no_grad():
        loss = objective(logits, targets, val_idx).item()
    predicted = logits["class"].argmax(1).cpu().numpy()
    with warnings.catch_warnings():  # a class absent from a small validation set
        warnings.simplefilter("ignore", UserWarning)
        bacc = balanced_accuracy_score(train.y[val_idx], predicted)
    return loss, float(bacc)


def _forward(
    net: nn.Module, images: TrainSet | TestSet, indices: np.ndarray, inputs: Inputs, batch_size: int
) -> dict[str, torch.Tensor]:
    """Float32 logits per head for the images at `indices`, in evaluation mode."""
    net.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    amp = inputs.device.type == "cuda"
    with torch.inference_mode(), torch.autocast(inputs.device.type, torch.float16, enabled=amp):
        for start in range(0, len(indices), batch_size):
            for head, out in net(inputs.tensor(images, indices[start : start + batch_size])).items():
                chunks.setdefault(head, []).append(out.float())
    return {head: torch.cat(parts) for head, parts in chunks.items()}


def predict(fitted: Fitted, test: TestSet) -> dict[str, np.ndarray]:
    """Probabilities per head, (len(test), outputs) float64 rows summing to 1."""
    if not len(test):
        return {head: np.zeros((0, n)) for head, n in fitted.heads.items()}
    logits = _forward(fitted.net, test, np.arange(len(test)), fitted.inputs, fitted.batch_size)
    out = {}
    for head, values in logits.items():
        proba = torch.softmax(values, dim=1).cpu().numpy().astype(np.float64)
        out[head] = proba / proba.sum(axis=1, keepdims=True)
    return out
