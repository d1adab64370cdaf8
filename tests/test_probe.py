"""Frozen-backbone probes: a tiny random-init timm model saved to a file runs end to end, its
embeddings are cached per (weights, image, transform) and reused, and its records name the weights
by their hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch

from bhbench import TestSet, TrainSet, registry
from bhbench.cli import main
from bhbench.data.images import ImageStore
from bhbench.errors import UserError
from bhbench.method import TrainMeta
from bhbench_baselines.probe import embed
from bhbench_baselines.probe.heads import HEADS

MODEL = "test_resnet"  # timm's 0.4 M-parameter test network


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(timm.create_model(MODEL).state_dict(), path)  # with its classifier, as hub files are
    return path


def stored_sets(root: Path, n: int = 24) -> tuple[TrainSet, TestSet]:
    """Images in an image store (so they have cache keys); the class shows in the mean colour."""
    rng = np.random.default_rng(0)
    store = ImageStore(root / "images")
    y = np.arange(n) % 2
    items = []
    for i in range(n):
        path = root / f"{i}.png"
        colour = (60, 120, 200) if y[i] else (200, 120, 60)
        cv2.imwrite(str(path), np.clip(rng.normal(colour, 25, (40, 60, 3)), 0, 255).astype(np.uint8))
        items.append((f"{i:032x}", path))
    store.ensure(items)
    keys = [k for k, _ in items]
    patients = np.array([f"p{i % 8}" for i in range(16)])
    meta = TrainMeta(y[:16], y[:16] > 0, np.array(["A"] * 16), np.full(16, 40), patients)
    train = TrainSet.build("binary", meta, keys=keys[:16], store=str(store.root))
    return train, TestSet.build("binary", keys=keys[16:], store=str(store.root))


def count_forwarded_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images the model actually runs on (each Embedder also runs one blank image to size itself)."""
    seen = [0]
    original = embed.Embedder._forward

    def counted(self, x):
        seen[0] += x.shape[0]
        return original(self, x)

    monkeypatch.setattr(embed.Embedder, "_forward", counted)
    return seen


def test_probe_on_a_saved_state_dict_reuses_cached_embeddings_and_names_the_weights(tmp_path, weights, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))
    train, test = stored_sets(tmp_path)
    seen = count_forwarded_images(monkeypatch)
    runs = []
    for _ in range(2):
        seen[0] = 0
        method = registry.create("probe_resnet50", model=MODEL, weights=str(weights), device="cpu").fit(train)
        proba = method.predict_proba(test)
        runs.append((proba, method.fit_info(), seen[0]))
    (first, info, computed), (second, info2, recomputed) = runs
    assert computed == 1 + len(train) + len(test)
    assert recomputed == 1  # only the blank image that sizes the model: every embedding came from the cache
    assert info["train_embeddings_computed"] == 16 and info2["train_embeddings_cached"] == 16
    assert info2["test_embeddings_computed"] == 0
    np.testing.assert_array_equal(first, second)
    assert first.shape == (8, 2)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert info["init"] == f"file:{hashlib.sha256(weights.read_bytes()).hexdigest()}"
    assert info["parameters"] == sum(p.numel() for p in timm.create_model(MODEL, num_classes=0).parameters())
    assert info["head"]["search"]["grouped_by"] == "patient"


def test_other_weights_or_images_without_keys_never_reuse_the_cache(tmp_path, weights, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))
    train, _ = stored_sets(tmp_path)
    seen = count_forwarded_images(monkeypatch)
    registry.create("probe_resnet50", model=MODEL, weights=str(weights), device="cpu").fit(train)
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(timm.create_model(MODEL).state_dict(), other)
    seen[0] = 0
    registry.create("probe_resnet50", model=MODEL, weights=str(other), device="cpu").fit(train)
    assert seen[0] == 1 + len(train)
    method = registry.create("probe_resnet50", model=MODEL, weights=str(weights), device="cpu").fit(train)
    arrays = [test_image for test_image in (train.image(i) for i in range(4))]
    seen[0] = 0
    for _ in range(2):  # no keys (the harness timing FPS): computed every time
        method.predict_proba(TestSet.build("binary", images=arrays))
    assert seen[0] == 8


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_gives_probabilities(tmp_path, weights, head):
    train, test = stored_sets(tmp_path)
    method = registry.create("probe_resnet50", model=MODEL, weights=str(weights), head=head, device="cpu")
    proba = method.fit(train).predict_proba(test)
    assert proba.shape == (8, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert method.fit_info()["head"]["classifier"] == head


def test_bad_probe_settings_are_user_errors(tmp_path, weights):
    train, _ = stored_sets(tmp_path)
    cases = [
        ({"head": "forest"}, "unknown probe head"),
        ({"model": "test_vit"}, "does not match"),  # a ResNet's state dict for a ViT
        ({"model": "resnet5O"}, "did you mean"),
        ({"weights": str(tmp_path / "missing.pth")}, "does not exist"),
    ]
    for params, message in cases:
        chosen = {"model": MODEL, "weights": str(weights), **params}
        with pytest.raises(UserError, match=message):
            registry.create("probe_resnet50", device="cpu", **chosen).fit(train)


@pytest.mark.slow
def test_a_probe_run_writes_records_that_carry_the_weights_hash(tiny_tree, tmp_path, weights):
    """Five folds through `bhbench run` (worker processes included): about a minute."""
    out = tmp_path / "results"
    args = ["run", "--method", "probe_resnet50_knn", "--data", str(tiny_tree), "--results", str(out), "--mag", "40"]
    args += ["--set", f"model={MODEL}", "--set", f"weights={weights}", "--fps-images", "4"]
    args += ["--sandbox", "off"]  # the sandbox does not show the worker a weights file outside its area
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in out.rglob("fold*.json")]
    assert len(records) == 5
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    for record in records:
        info = record["method"]["fit_info"]
        assert info["init"] == f"file:{digest}" and info["parameters"] > 0
    assert any((r["timing"] or {}).get("fps_model", 0) > 0 for r in records)


def test_model_kwargs_name_timm_layers_as_foundation_models_need():
    """UNI2 and Virchow are timm ViTs built with SwiGLU MLPs, named in JSON by their timm name."""
    kwargs = {"mlp_layer": "SwiGLUPacked", "act_layer": "silu", "init_values": 1e-5}
    embedder = embed.Embedder("test_vit", "random", kwargs, "cpu", 4)
    assert type(embedder.model.blocks[0].mlp).__name__ == "GluMlp"
    assert embedder.spec.dim == embedder.model.num_features and embedder.spec.init == "random"
