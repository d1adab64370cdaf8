"""Deep models: shapes of every registered network, SE blocks per backbone block, bilinear pooling
against its definition, BCNN versus Fast BCNN, the multi-task CNN's sharing and loss, weight files
and the paper recipe's refusal of random weights, augmentation, validation split, training."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from builders import train_set
from timm.layers import SEModule
from timm.models.inception_resnet_v2 import Block8, Block17, Block35
from timm.models.inception_v3 import InceptionA, InceptionB, InceptionC, InceptionD, InceptionE
from timm.models.resnet import Bottleneck

from bhbench import TestSet, TrainSet, params, registry, util
from bhbench.errors import UserError
from bhbench.worker import Task, Worker, execute
from bhbench_baselines.deep import backbones, training
from bhbench_baselines.deep.augment import augment
from bhbench_baselines.deep.methods import MultiTaskCNN
from bhbench_baselines.deep.networks import backbones_of, bilinear_pool, feature_map

registry.discover()
DEEP = [e.name for e in registry.entries() if e.family == "deep"]


def tiny_train(task: str = "binary", n: int = 16, patients: int = 4, seed: int = 0) -> TrainSet:
    """Images whose mean colour gives the class away: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    n_classes = 2 if task == "binary" else 8
    y = np.arange(n) % n_classes
    base = rng.uniform(40, 215, (n_classes, 3))
    images = [np.clip(base[c] + rng.normal(0, 20, (48, 72, 3)), 0, 255).astype(np.uint8) for c in y]
    patient = [f"p{i % patients}" for i in range(n)]
    return train_set(y, images, task=task, patients=patient, magnification=[40, 100, 200, 400] * (n // 4))


def small(name: str, **params) -> training.TrainableMethod:
    """A registered method with settings that keep a CPU test short."""
    method = registry.create(name, device="cpu", **params)
    small_params = {"input_size": 75, "bilinear_dim": 16, "batch_size": 8}  # 75: InceptionV3 minimum
    method.set_params(**{k: v for k, v in small_params.items() if k in method.param_names() and k not in params})
    return method


def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """timm as it behaves without internet: building works, downloading weights does not."""
    create = timm.create_model

    def offline(*args, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return create(*args, **kwargs)

    monkeypatch.setattr(backbones.timm, "create_model", offline)


def test_registering_the_deep_methods_does_not_import_torch():
    code = (
        "import sys; from bhbench import registry; registry.discover(); "
        "names = {e.name for e in registry.entries() if e.family == 'deep'}; "
        "assert {'cnn', 'mtcnn', 'bcnn', 'fast_bcnn', 'resnet50_se', 'inception_resnet_v2_fast_bcnn'} <= names; "
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_backbone_gets_every_head():
    for backbone, head in product(("resnet50", "inception_v3", "inception_resnet_v2"), ("", "_se", "_bcnn")):
        assert f"{backbone}{head}" in DEEP
        assert f"{backbone}_fast_bcnn" in DEEP
    assert registry.create("fast_bcnn").backbone == registry.create("bcnn").backbone == "inception_v3"
    assert registry.create("resnet50_se", backbone="resnet18").backbone == "resnet18"


@pytest.mark.parametrize("name", DEEP)
def test_network_gives_one_row_of_logits_per_image_and_head(name: str):
    method = registry.create(name)
    recipe = method.quick_recipe
    if "input_size" in method.param_names():  # the CNNs are defined on 100x100 only
        recipe = replace(recipe, input_size=75)  # InceptionV3's smallest input
    torch.manual_seed(0)
    net = method.build_network(8, recipe).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, recipe.input_size, recipe.input_size))
    expected = {"class": (2, 8)} | ({"magnification": (2, 4)} if name == "mtcnn" else {})
    assert {head: tuple(v.shape) for head, v in out.items()} == expected
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(("name", "task"), [("cnn", "subtype"), ("mtcnn", "binary"), ("fast_bcnn", "binary")])
def test_fitted_method_returns_probabilities(name: str, task: str):
    train = tiny_train(task)
    test = TestSet.build(task, images=[train.image(i) for i in range(5)])
    method = small(name, epochs=1).fit(train)
    proba = method.predict_proba(test)
    assert proba.shape == (5, train.n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    aux = method.predict_aux(test)
    if name == "mtcnn":
        assert aux["magnification"].shape == (5, 4)
        np.testing.assert_allclose(aux["magnification"].sum(axis=1), 1.0, atol=1e-9)
    else:
        assert aux == {}
    info = method.fit_info()
    assert info["recipe"] == "quick" and "no CUDA" in info["recipe_reason"] and info["init"] == "random"
    assert info["epochs_run"] == 1 and info["parameters"] > 0 and info["device"] == "cpu"


BLOCKS = {  # backbone -> the timm block types it is made of (one SE block each)
    "resnet50": (Bottleneck,),
    "inception_v3": (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE),
    "inception_resnet_v2": (Block35, Block17, Block8),
}


@pytest.mark.parametrize("backbone", sorted(BLOCKS))
def test_every_se_variant_has_one_se_block_per_backbone_block(backbone: str):
    counts = {}
    for name in (backbone, f"{backbone}_se"):
        method = registry.create(name)
        net = method.build_network(2, replace(method.quick_recipe, input_size=75))
        blocks = [m for m in net.modules() if isinstance(m, BLOCKS[backbone])]
        counts[name] = (len(blocks), sum(isinstance(m, SEModule) for m in net.modules()))
    n_blocks = {"resnet50": 16, "inception_v3": 11, "inception_resnet_v2": 40}[backbone]
    assert counts == {backbone: (n_blocks, 0), f"{backbone}_se": (n_blocks, n_blocks)}
    se = [m for m in net.modules() if isinstance(m, SEModule)]
    assert all(m.fc1.out_channels == m.fc1.in_channels // 8 for m in se)  # Liu et al.'s reduction


def test_bilinear_pooling_is_the_mean_outer_product_with_signed_sqrt_and_l2_norm():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 2, 3), torch.randn(2, 4, 2, 3)  # signed values: the sign must survive
    expected = []
    for n in range(2):
        total = torch.zeros(3, 4)
        for i, j in product(range(2), range(3)):
            total += torch.outer(a[n, :, i, j], b[n, :, i, j])
        z = (total / 6).flatten()
        z = torch.sign(z) * torch.sqrt(torch.abs(z))
        expected.append(z / torch.linalg.norm(z))
    torch.testing.assert_close(bilinear_pool(a, b), torch.stack(expected))


def _count_feature_calls(backbone: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = backbone.forward_features

    def counted(x):
        calls[0] += 1
        return original(x)

    monkeypatch.setattr(backbone, "forward_features", counted)
    return calls


def test_bcnn_has_two_backbones_and_fast_bcnn_one_used_once(monkeypatch):
    nets = {}
    for name in ("bcnn", "fast_bcnn"):
        method = registry.create(name)
        nets[name] = method.build_network(2, replace(method.quick_recipe, input_size=75, bilinear_dim=None))
    count = {name: sum(p.numel() for b in backbones_of(net) for p in b.parameters()) for name, net in nets.items()}
    assert count["bcnn"] == 2 * count["fast_bcnn"] > 0
    calls = {name: [_count_feature_calls(b, monkeypatch) for b in backbones_of(net)] for name, net in nets.items()}
    for net in nets.values():
        net.eval()(torch.randn(1, 3, 75, 75))
    assert [c[0] for c in calls["bcnn"]] == [1, 1]
    assert [c[0] for c in calls["fast_bcnn"]] == [1]


def test_mtcnn_shares_every_layer_but_the_output_layers():
    method = MultiTaskCNN()
    torch.manual_seed(0)
    net = method.build_network(2, method.quick_recipe).eval()
    targets = {h: torch.as_tensor(t.labels) for h, t in method.targets(tiny_train()).items()}
    logits, idx = net(torch.randn(4, 3, 100, 100)), np.arange(4)
    names = [n for n, _ in net.named_parameters()]
    reached = {}
    for head, labels in targets.items():
        loss = F.cross_entropy(logits[head], labels[idx])
        grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True)
        reached[head] = {n for n, g in zip(names, grads, strict=True) if g is not None and g.abs().sum() > 0}
    shared = reached["class"] & reached["magnification"]
    assert shared == {n for n in names if not n.startswith("heads.")}  # every hidden layer, FC layers too
    assert reached["class"] - shared == {"heads.class.weight", "heads.class.bias"}
    assert reached["magnification"] - shared == {"heads.magnification.weight", "heads.magnification.bias"}
    assert (method.w_class, method.w_mag) == (1.0, 1.0)  # the paper adds the two losses


def test_mtcnn_gradients_reach_both_heads_and_the_loss_weights_act():
    train = tiny_train()
    x, idx = torch.randn(4, 3, 100, 100), np.arange(4)
    for w_class, w_mag in ((1.0, 1.0), (0.25, 0.75), (1.0, 0.0)):
        method = MultiTaskCNN(w_class=w_class, w_mag=w_mag)
        torch.manual_seed(0)
        net = method.build_network(2, method.quick_recipe)
        targets = {h: (torch.as_tensor(t.labels), t.weight) for h, t in method.targets(train).items()}
        logits = net(x)
        loss = training.objective(logits, targets, idx)
        by_head = {h: torch.nn.functional.cross_entropy(logits[h], t[idx]) for h, (t, _) in targets.items()}
        torch.testing.assert_close(loss, w_class * by_head["class"] + w_mag * by_head["magnification"])
        loss.backward()
        for head, weight in (("class", w_class), ("magnification", w_mag)):
            grads = [p.grad for p in net.heads[head].parameters()]
            if weight:
                assert all(g is not None and g.abs().sum() > 0 for g in grads), head
            else:
                assert all(g is None for g in grads), head
        assert all(p.grad.abs().sum() > 0 for p in net.features.parameters())
    with pytest.raises(UserError, match="mtcnn: w_class=0 is not allowed: expected a number > 0$"):
        params.resolve(["mtcnn"], {"w_class": 0, "w_mag": 0})  # the class head is what is scored


def test_magnification_labels_index_the_four_magnifications():
    heads = MultiTaskCNN().targets(tiny_train())
    assert heads["magnification"].outputs == 4
    np.testing.assert_array_equal(heads["magnification"].labels[:4], [0, 1, 2, 3])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_saved_weights_reload_into_every_backbone_and_give_identical_features(tmp_path, suffix):
    torch.manual_seed(1)
    source = timm.create_model("resnet18").eval()  # with its ImageNet classifier, as hub files are
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    method = registry.create("resnet50_bcnn", backbone="resnet18", weights=str(path))
    assert method.init(method.quick_recipe) == f"file:{hashlib.sha256(path.read_bytes()).hexdigest()}"
    net = method.build_network(2, replace(method.quick_recipe, input_size=64)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = source.forward_features(x)
        for backbone in backbones_of(net):
            assert torch.equal(feature_map(backbone, x), want)
    fresh = registry.create("resnet50_bcnn", backbone="resnet18").build_network(2, method.quick_recipe)
    with torch.no_grad():
        assert not torch.equal(feature_map(backbones_of(fresh.eval())[0], x), want)


def test_unusable_weights_files_are_user_errors(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    other_arch = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34").state_dict(), other_arch)
    smaller = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), smaller)
    wrong_width = tmp_path / "wide.pth"
    state = timm.create_model("resnet18").state_dict()
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    torch.save(state, wrong_width)
    cases = [
        ("resnet18", tmp_path / "nowhere.pth", "does not exist"),
        ("resnet18", garbage, "not a PyTorch or safetensors state dict"),
        ("resnet18", other_arch, "weights the backbone does not have"),
        ("resnet34", smaller, "backbone weights missing"),
        ("resnet18", wrong_width, "wrong shape"),
    ]
    for backbone, path, message in cases:
        with pytest.raises(UserError, match=message) as caught:
            backbones.create_backbone(backbone, str(path), input_size=64)
        assert str(path) in str(caught.value)


def test_failed_hub_download_says_to_use_a_local_weights_file(monkeypatch):
    offline_hub(monkeypatch)
    with pytest.raises(UserError, match="weights=PATH"):
        backbones.create_backbone("resnet18", "imagenet", input_size=64)


def test_paper_recipe_without_imagenet_weights_stops_with_one_line(monkeypatch):
    offline_hub(monkeypatch)
    for weights, message in (("random", "weights=imagenet .* or weights=PATH"), ("auto", "weights=PATH")):
        with pytest.raises(UserError, match=message) as caught:
            small("fast_bcnn", recipe="paper", weights=weights, epochs=1).fit(tiny_train())
        assert "\n" not in str(caught.value)


def test_local_weights_run_the_paper_recipe_and_the_record_names_their_hash(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    method = small("resnet50", backbone="resnet18", recipe="paper", weights=str(path), epochs=1, input_size=64)
    info = method.fit(tiny_train()).fit_info()
    assert info["recipe"] == "paper" and info["lr"] == 0.1 and info["optimizer"] == "sgd"
    assert info["init"] == f"file:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def test_each_worker_takes_its_share_of_the_threads(monkeypatch):
    monkeypatch.setenv(util.THREADS_ENV, "")  # unset, and restored after the worker sets it
    cores = util.cpu_count()
    assert Worker(None, sharing=1).threads is None  # one worker: all the cores
    assert Worker(None, sharing=2 * cores).threads == 1
    train = tiny_train()
    params = {"epochs": 1, "device": "cpu", "batch_size": 8}
    task = Task("cnn", params, [(train, train.as_test())], threads=1)  # what a worker of several is sent
    assert execute(task).fit_info[0]["threads"] == 1


@pytest.mark.slow
def test_real_hub_download_fails_here_with_the_weights_hint():
    """Takes about a minute offline (the hub client retries)."""
    with pytest.raises(UserError, match="weights=PATH"):
        backbones.create_backbone("resnet18", "imagenet", input_size=64)


def test_bad_names_and_settings_are_user_errors():
    with pytest.raises(UserError, match="did you mean"):
        backbones.create_backbone("resnet5O", "random", input_size=64)
    with pytest.raises(UserError, match="fails on a 40x40 input"):
        backbones.create_backbone("inception_v3", "random", input_size=40)
    with pytest.raises(UserError, match="squeeze-and-excitation"):
        backbones.create_backbone("vgg11", "random", input_size=64, squeeze_excite=True)
    with pytest.raises(UserError, match="recipe='fast' is not allowed: expected 'auto' or 'paper' or 'quick'"):
        params.resolve(["cnn"], {"recipe": "fast"})
    with pytest.raises(UserError, match="device"):
        training.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            training.resolve_device("cuda")
    with pytest.raises(UserError, match="batch_size=1 is not allowed: expected an integer >= 2 or null"):
        params.resolve(["cnn"], {"batch_size": 1})  # batch norm needs two images


def test_auto_recipe_is_paper_on_cuda_and_quick_on_cpu():
    method = registry.create("fast_bcnn")
    paper, quick = method.paper_recipe, method.quick_recipe
    # Liu et al.'s code: Keras SGD(lr=0.1) (no momentum), lr / 10 after 10 flat epochs, batch 16, 100 epochs
    assert (paper.input_size, paper.batch_size, paper.max_epochs, paper.optimizer) == (224, 16, 100, "sgd")
    assert (paper.lr, paper.momentum, paper.plateau_patience, paper.needs_imagenet) == (0.1, 0.0, 10, True)
    assert (paper.max_rotation, paper.max_shift, paper.flips, paper.fill) == (90.0, 0.1, True, "border")
    assert training.choose_recipe("auto", torch.device("cuda"), paper, quick)[0] is paper
    assert training.choose_recipe("auto", torch.device("cpu"), paper, quick)[0] is quick
    assert training.choose_recipe("paper", torch.device("cpu"), paper, quick)[0] is paper


def test_validation_holds_out_whole_patients_of_the_training_part():
    rng = np.random.default_rng(0)
    patients = np.repeat([f"p{i}" for i in range(20)], 6)
    y = np.repeat(rng.integers(0, 2, 20), 6)
    fit_idx, val_idx, _ = training.validation_split(patients, y, seed=0)
    assert len(val_idx) and len(fit_idx)
    assert sorted(np.concatenate([fit_idx, val_idx])) == list(range(len(y)))
    assert not set(patients[fit_idx]) & set(patients[val_idx])
    assert set(y[val_idx]) == {0, 1}
    _, none, why = training.validation_split(patients[:24], y[:24], seed=0)
    assert len(none) == 0 and "4 training patients" in why
    # Eight patients but four images of each class (one magnification of a tiny set, MS regime): too
    # few to stratify five folds, so the network trains without validation instead of failing.
    _, none, why = training.validation_split(np.array([f"p{i}" for i in range(8)]), np.repeat([0, 1], 4), seed=0)
    assert len(none) == 0 and "fewer than 5 training images in every class" in why


def test_augmentation_only_applies_symmetries_of_the_square():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    recipe = replace(registry.create("cnn").quick_recipe, quarter_turns=True, flips=True, max_shift=0.0)
    out = augment(x, recipe, torch.Generator().manual_seed(0))
    seen = set()
    for image, result in zip(x, out, strict=True):
        variants = [torch.rot90(v, k, dims=(1, 2)) for v in (image, image.flip(2)) for k in range(4)]
        match = [i for i, v in enumerate(variants) if torch.allclose(result, v, atol=1e-5)]
        assert match, "augmented image is not a rotation/flip of its source"
        seen.add(match[0])
    assert seen == set(range(8))


@pytest.mark.parametrize(("name", "params"), [("cnn", {}), ("fast_bcnn", {"backbone": "resnet18"})])
def test_a_few_epochs_on_a_tiny_set_lower_the_training_loss(name: str, params: dict):
    method = small(name, epochs=4, lr=1e-3, **params).fit(tiny_train(n=24))
    history = [epoch["train_loss"] for epoch in method.fit_info()["history"]]
    assert len(history) == 4
    assert history[-1] < 0.9 * history[0], history


def test_same_seed_same_probabilities():
    train = tiny_train()
    test = TestSet.build("binary", images=[train.image(i) for i in range(4)])
    runs = [small("cnn", epochs=1, seed=3).fit(train).predict_proba(test) for _ in range(2)]
    np.testing.assert_array_equal(*runs)
