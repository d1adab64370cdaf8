"""Figures of the leaderboard and of the method pages, drawn with matplotlib as SVG.

The bytes are a function of the records alone (fixed hash salt for element ids, no date or
creator in the metadata, text kept as text rather than font-dependent paths), so
`bhbench leaderboard --check` verifies the figures exactly as it verifies the tables."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from bhbench.metric import ECE_BINS, ECE_EDGES, calibration
from bhbench.scoring import BY_MAGNIFICATION, HEADLINE

STYLE = {"svg.hashsalt": "bhbench", "svg.fonttype": "none", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3}
TOP_ROC = 3


@contextmanager
def _figure(width: float, height: float) -> Iterator:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), layout="constrained")
        yield fig


def svg(draw: Callable, width: float, height: float) -> bytes:
    """Bytes of an SVG drawn by `draw(fig)`, identical on every call for the same input."""
    with _figure(width, height) as fig:
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def forest(table: pd.DataFrame, title: str) -> bytes:
    """Headline with its 95% interval per ranked row, best at the top; reference rows in grey."""
    rows = table[table["block"] == "ranked"].iloc[::-1]

    def draw(fig) -> None:
        ax = fig.subplots()
        y = np.arange(len(rows))
        ref = rows["reference_row"].to_numpy(dtype=bool)
        scale = HEADLINE.metric.unit.scale
        mean = scale * rows[f"{HEADLINE.name}_mean"].to_numpy(dtype=float)
        err = np.abs(scale * rows[[f"{HEADLINE.name}_lo", f"{HEADLINE.name}_hi"]].to_numpy(dtype=float).T - mean)
        for mask, colour, marker in ((~ref, "tab:blue", "o"), (ref, "tab:grey", "s")):
            ax.errorbar(mean[mask], y[mask], xerr=err[:, mask], fmt=marker, color=colour, capsize=2, ms=4)
        ax.set_yticks(y, [f"{r} {m}" + (" (reference)" if f else "") for r, m, f in zip(
            rows["rank"], rows["method"], ref, strict=True)])  # fmt: skip
        ax.set_xlabel("patient recognition rate, mean of magnifications (%) with 95% bootstrap interval")
        ax.set_title(title, fontsize=9)

    return svg(draw, 7.5, 1.2 + 0.22 * len(rows))


def roc(curves: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> bytes:
    """ROC curves of P(malignant) over the pooled test images of all folds: (label, y, score)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    def draw(fig) -> None:
        ax = fig.subplots()
        for label, y, score in curves:
            fpr, tpr, _ = roc_curve(y, score)
            ax.plot(fpr, tpr, label=f"{label} (pooled AUC {roc_auc_score(y, score):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate (benign called malignant)")
        ax.set_ylabel("true positive rate")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="lower right", fontsize=8)

    return svg(draw, 5, 4.5)


def confusion(y: np.ndarray, pred: np.ndarray, classes: tuple[str, ...], title: str) -> bytes:
    """Row-normalised confusion matrix (each true class sums to 100%) with image counts."""
    k = len(classes)
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    with np.errstate(invalid="ignore"):
        share = counts / counts.sum(1, keepdims=True)

    def draw(fig) -> None:
        ax = fig.subplots()
        ax.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{100 * share[i, j]:.0f}%\n{counts[i, j]}", ha="center", va="center",
                            fontsize=7, color=colour)  # fmt: skip
        ax.set_xticks(range(k), classes)
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.grid(False)
        ax.set_title(title, fontsize=9)

    return svg(draw, 1.6 + 0.55 * k, 1.4 + 0.5 * k)


def per_magnification(table: pd.DataFrame, title: str) -> bytes:
    """Patient recognition rate at each magnification per row (ranked rows, best at the top)."""
    rows = table[table["block"] == "ranked"].iloc[::-1]

    def draw(fig) -> None:
        ax = fig.subplots()
        y = np.arange(len(rows))
        for j, (s, marker) in enumerate(zip(BY_MAGNIFICATION, "o^sD", strict=True)):
            x = s.metric.unit.scale * rows[f"{s.name}_mean"].to_numpy(dtype=float)
            ax.plot(x, y + (j - 1.5) * 0.12, marker, ms=4, label=s.name, alpha=0.85)
        ax.set_yticks(y, list(rows["method"]))
        ax.set_xlabel("patient recognition rate (%), mean over folds")
        ax.legend(ncol=4, fontsize=8, loc="lower left")
        ax.set_title(title, fontsize=9)

    return svg(draw, 7.5, 1.4 + 0.22 * len(rows))


def reliability(y: np.ndarray, proba: np.ndarray) -> tuple[bytes, float]:
    """Reliability diagram of the top-class confidence and the expected calibration error (the ECE
    metric's bins)."""
    _, acc, _, ece = calibration(y, proba)
    bins, edges = ECE_BINS, ECE_EDGES

    def draw(fig) -> None:
        ax = fig.subplots()
        centres = (edges[:-1] + edges[1:]) / 2
        ax.bar(centres, np.nan_to_num(acc), width=1 / bins, edgecolor="black", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label="perfect calibration")
        ax.set_xlabel("confidence of the predicted class")
        ax.set_ylabel("fraction correct")
        ax.set_title(f"reliability (ECE {100 * ece:.1f}%, {bins} bins)", fontsize=9)
        ax.legend(fontsize=8, loc="upper left")

    return svg(draw, 4.5, 4), ece


def curves(histories: list[list[dict]], title: str) -> bytes:
    """Training and validation loss per epoch, one line pair per fold."""

    def draw(fig) -> None:
        ax = fig.subplots()
        for i, history in enumerate(histories):
            epochs = np.arange(1, len(history) + 1)
            for key, style in (("train_loss", "-"), ("val_loss", "--")):
                values = [np.nan if h.get(key) is None else h[key] for h in history]  # no validation: None
                ax.plot(epochs, values, style, color=f"C{i}", label=f"fold {i + 1} {key.split('_')[0]}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(title, fontsize=9)

    return svg(draw, 5.5, 4)


def stain_shift(panels: dict[str, list], title: str) -> bytes:
    """Headline against HED shift strength, one line per method, a panel per stain normalisation
    (`bhbench.leaderboard.robustness.Curve`s)."""
    import matplotlib

    def draw(fig) -> None:
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        methods = sorted({c.method for curves in panels.values() for c in curves})
        colours = dict(zip(methods, matplotlib.colormaps["tab20"].resampled(max(len(methods), 1)).colors, strict=False))
        for ax, (norm, curves) in zip(axes, panels.items(), strict=True):
            for c in sorted(curves, key=lambda c: c.method):
                ax.plot(c.strengths, 100 * c.headline, "-o", ms=2.5, lw=1, color=colours[c.method], label=c.method)
            ax.set_title(f"stain normalisation: {norm}", fontsize=8)
            ax.set_xlabel("HED shift strength")
        axes[0].set_ylabel("patient recognition rate (%)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right", fontsize=6)
        fig.suptitle(title, fontsize=9)

    return svg(draw, 3 + 2.8 * len(panels), 4.2)
