"""Frozen-backbone probes: a tiny random-init timm model saved to a file runs end to end, its
embeddings are cached per (weights, image, transform) and reused, and its records name the weights
by their hash."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch
from builders import train_set

import bhbench_baselines
from bhbench import TestSet, TrainSet, fingerprint, params, registry
from bhbench.cli import main
from bhbench.data.images import ImageStore
from bhbench.errors import UserError
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
    patients = [f"p{i % 8}" for i in range(16)]
    train = train_set(y[:16], keys=keys[:16], store=str(store.root), patients=patients)
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
    with pytest.raises(UserError, match="probe_resnet50: head='forest' is not allowed: expected 'logreg' or 'knn'"):
        params.resolve(["probe_resnet50"], {"head": "forest"})
    cases = [
        ({"model": "test_vit"}, "does not match"),  # a ResNet's state dict for a ViT
        ({"model": "resnet5O"}, "did you mean"),
        ({"weights": str(tmp_path / "missing.pth")}, "does not exist"),
    ]
    for values, message in cases:
        chosen = {"model": MODEL, "weights": str(weights), **values}
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
    assert embedder.spec.dim == embedder.model.num_features and embedder.spec.init == "random:seed=0"


def test_random_weights_come_from_the_seed_so_cached_and_recomputed_embeddings_agree(tmp_path, monkeypatch):
    """The check battery probes with weights=random, one head after another in one process. Each probe
    drew its network from the global generator wherever earlier work had left it, and the cache named
    them all "random": the k-NN probe read the logistic one's cached embeddings, then embedded bare
    pixels with its own network (predictions moved by 1)."""
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))
    train, test = stored_sets(tmp_path)
    bare = TestSet.build("binary", images=[test.image(i) for i in range(len(test))])
    registry.create("probe_resnet50", model=MODEL, weights="random", device="cpu").fit(train).predict_proba(test)
    torch.rand(10)  # any other work moves the global generator on
    knn = registry.create("probe_resnet50_knn", model=MODEL, weights="random", device="cpu").fit(train)
    assert knn.fit_info()["train_embeddings_cached"] == len(train) and knn.fit_info()["init"] == "random"
    cached = knn.embedder_.embed(test)
    assert cached.computed == 0
    np.testing.assert_array_equal(cached.matrix, knn.embedder_.embed(bare).matrix)
    np.testing.assert_array_equal(knn.predict_proba(test), knn.predict_proba(bare))
    other = embed.Embedder(MODEL, "random", {}, "cpu", 4, seed=1)
    assert other.spec.id != knn.embedder_.spec.id
    assert not np.array_equal(other.embed(bare).matrix, cached.matrix)


@pytest.mark.parametrize("model", [MODEL, "test_vit"])
def test_an_embedding_does_not_depend_on_the_batch_it_was_computed_in(tmp_path, model):
    """The cache keeps a vector computed in one batch; a rerun on a cold cache, or bare pixels, compute
    it in another. On CPU (oneDNN) a forward in evaluation mode gives bit-identical vectors in batches
    of 1, 7, 16 or 32 in any order (measured for resnet50 and vit_small too); this guards that."""
    train, _ = stored_sets(tmp_path)
    arrays = [train.image(i) for i in range(len(train))]
    embedder = embed.Embedder(model, "random", {}, "cpu", 16)
    first = embedder.embed(TestSet.build("binary", images=arrays)).matrix
    for batch_size, order in [(5, slice(None, None, -1)), (1, slice(None)), (3, slice(1, None, 2))]:
        embedder.batch_size = batch_size
        again = embedder.embed(TestSet.build("binary", images=arrays[order])).matrix
        np.testing.assert_array_equal(again, first[order])


def test_a_probe_fingerprint_covers_the_baseline_modules_it_imports(tmp_path):
    """The probe fits the hand-crafted classifiers and runs deep's backbones: editing them changes its
    record's code fingerprint. A family that imports no other keeps the fingerprint of its own folder."""
    source = Path(bhbench_baselines.__file__).parent
    tree = Path(shutil.copytree(source, tmp_path / source.name, ignore=shutil.ignore_patterns("__pycache__")))
    probe, handcrafted, deep = (
        fingerprint.code_files(tree / family / "methods.py") for family in ("probe", "handcrafted", "deep")
    )
    names = fingerprint.code_fingerprint(probe)["files"]
    assert names[:4] == ["__init__.py", "embed.py", "heads.py", "methods.py"]
    assert {"../handcrafted/classifiers.py", "../handcrafted/nearest.py", "../handcrafted/features.py"} <= set(names)
    assert {"../deep/backbones.py", "../deep/training.py", "../deep/networks.py"} <= set(names)
    assert "../handcrafted/methods.py" not in names and "../deep/methods.py" not in names  # not imported
    assert handcrafted == sorted((tree / "handcrafted").glob("*.py"))
    assert deep == sorted((tree / "deep").glob("*.py"))

    def hashes() -> list[str]:
        return [fingerprint.code_fingerprint(files)["hash"] for files in (probe, handcrafted, deep)]

    before = hashes()
    with open(tree / "handcrafted" / "classifiers.py", "a") as fh:
        fh.write("# edited\n")
    edited = hashes()
    assert edited[0] != before[0] and edited[1] != before[1] and edited[2] == before[2]
    with open(tree / "handcrafted" / "lpq.py", "a") as fh:  # a descriptor the probe never imports
        fh.write("# edited\n")
    assert hashes()[0] == edited[0]


def test_imports_are_followed_relative_and_inside_functions_but_not_from_package_inits(tmp_path):
    files = {
        "pkg/__init__.py": "from pkg import a, b  # registration\n",
        "pkg/a/__init__.py": "",
        "pkg/a/m.py": "import numpy\nfrom ..b import c\n\ndef f():\n    from pkg.b.d import x\n",
        "pkg/b/__init__.py": "from pkg.b import e\n",
        "pkg/b/c.py": "from . import f\nfrom .f import g\n",
        "pkg/b/d.py": "x = 1\n",
        "pkg/b/e.py": "",
        "pkg/b/f.py": "g = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = fingerprint.code_fingerprint(fingerprint.code_files(tmp_path / "pkg" / "a" / "m.py"))["files"]
    assert found == ["__init__.py", "m.py", "../b/c.py", "../b/d.py", "../b/f.py"]


def test_the_declared_heads_are_the_heads_there_are():
    assert registry.get("probe_resnet50").declarations()["head"].text() == " or ".join(map(repr, HEADS))
