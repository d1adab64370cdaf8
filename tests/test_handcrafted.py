"""The 24 hand-crafted methods (registration, fit/predict contract, tuning, tiny training sets)
and their feature cache (hits, invalidation, bypass)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from builders import train_set
from PIL import Image
from scipy.ndimage import gaussian_filter

import bhbench_baselines.handcrafted  # noqa: F401  (registers the methods)
from bhbench import TestSet, TrainSet, params, registry
from bhbench.data.images import ImageStore, content_key
from bhbench.errors import DataError, UserError
from bhbench_baselines.handcrafted.classifiers import CLASSIFIERS, _inner_splits
from bhbench_baselines.handcrafted.descriptors import DESCRIPTORS, DescriptorSpec
from bhbench_baselines.handcrafted.features import FeatureCache, extract

NAMES = [f"{d}_{c}" for d in DESCRIPTORS for c in CLASSIFIERS]


def make_image(rng: np.random.Generator, label: int, patient: int) -> np.ndarray:
    """48x64 tissue-like texture: coarse blobs for class 0, fine grain for the others, and a
    per-patient stain, so classes are learnable and patients differ."""
    sigma = 3.0 if label == 0 else 0.8 + 0.2 * label
    grey = gaussian_filter(rng.normal(size=(48, 64)), sigma)
    grey = (grey - grey.min()) / (np.ptp(grey) + 1e-9)
    stain = np.array([0.8, 0.5, 0.7]) + 0.05 * (patient % 4)
    return np.clip(255 * grey[..., None] * stain, 0, 255).astype(np.uint8)


def make_sets(
    task: str = "binary", labels: tuple[int, ...] = (0, 1), patients: int = 6, per_patient: int = 3, seed: int = 0
) -> tuple[TrainSet, TestSet]:
    """A training set (each patient has one label) and 6 test images."""
    rng = np.random.default_rng(seed)
    y = np.array([labels[p % len(labels)] for p in range(patients) for _ in range(per_patient)])
    patient = np.array([f"P{p}" for p in range(patients) for _ in range(per_patient)])
    images = [make_image(rng, int(label), int(p[1:])) for label, p in zip(y, patient, strict=True)]
    tests = [make_image(rng, labels[i % len(labels)], 99) for i in range(6)]
    train = train_set(y, images, task=task, patients=patient, magnification=100)
    return train, TestSet.build(task, images=tests)


@pytest.fixture(scope="module")
def binary_sets() -> tuple[TrainSet, TestSet]:
    return make_sets()


def test_all_24_methods_are_registered_with_their_dimension():
    entries = {e.name: e for e in registry.entries() if e.family == "handcrafted"}
    assert sorted(entries) == sorted(NAMES) and len(NAMES) == 24
    assert entries["lbp_svm"].details == {"dim": 10}
    assert entries["clbp_qda"].details == {"dim": 1352}
    assert "Spanhol" in entries["pftas_rf"].reference
    assert set(registry.resolve(["pftas_*"])) == {"pftas_1nn", "pftas_qda", "pftas_svm", "pftas_rf"}


def test_parameters_are_descriptor_params_classifier_settings_seed_and_folds():
    assert registry.get("lbp_svm").cls.param_names() == ["P", "R", "C", "gamma", "seed", "cv_folds"]
    assert registry.get("lpq_qda").cls.param_defaults() == {
        "window": 3,
        "rho": 0.9,
        "pca_components": 32,
        "reg_param": None,
        "seed": 0,
        "cv_folds": 3,
    }
    method = registry.create("orb_rf", n_features=100, seed=3)
    assert method.get_params()["n_features"] == 100 and method.clone().get_params() == method.get_params()
    with pytest.raises(UserError, match="orb_rf has no parameter C"):
        registry.create("orb_rf", C=1.0)


@pytest.mark.parametrize("name", NAMES)
def test_every_method_fits_and_predicts_valid_probabilities(name, binary_sets):
    train, test = binary_sets
    method = registry.create(name)
    assert method.fit(train) is method
    proba = method.predict_proba(test)
    assert proba.shape == (len(test), 2)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    assert np.allclose(proba.sum(axis=1), 1)
    info = method.fit_info()
    json.dumps(info)  # the record must be able to store it
    assert info["descriptor"]["name"] == name.split("_")[0] and info["classifier"] == name.split("_")[1]
    assert info["dim"] == registry.get(name).details["dim"]


@pytest.mark.parametrize("classifier", sorted(CLASSIFIERS))
def test_probabilities_have_a_column_for_every_class_of_the_task(classifier):
    train, test = make_sets("subtype", labels=(0, 4, 5), patients=9)
    method = registry.create(f"glcm_{classifier}").fit(train)
    proba = method.predict_proba(test)
    assert proba.shape == (6, 8)
    assert np.allclose(proba.sum(axis=1), 1)
    unseen = [1, 2, 3, 6, 7]
    assert (proba[:, unseen] == 0).all()


@pytest.mark.parametrize("name", ["clbp_svm", "lpq_rf", "pftas_qda"])
def test_same_seed_gives_the_same_output(name, binary_sets):
    train, test = binary_sets
    first = registry.create(name, seed=1).fit(train)
    second = registry.create(name, seed=1).fit(train)
    assert np.array_equal(first.predict_proba(test), second.predict_proba(test))
    assert first.fit_info() == second.fit_info()


def test_unset_settings_are_chosen_by_patient_grouped_cv_and_recorded(binary_sets):
    train, _ = binary_sets
    info = registry.create("lbp_svm").fit(train).fit_info()
    search = info["search"]
    assert search["folds"] == 3 and search["grouped_by"] == "patient"
    assert len(search["scores"]) == len(search["grid"]["C"]) * len(search["grid"]["gamma"]) == 9
    assert info["settings"]["C"] in search["grid"]["C"]
    assert info["settings"]["gamma"] in search["grid"]["gamma"]

    fixed = registry.create("lbp_svm", C=2.5).fit(train).fit_info()
    assert fixed["settings"]["C"] == 2.5 and "C" not in fixed["search"]["grid"]


def test_inner_folds_never_split_a_patient():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"P{i}" for i in range(10)], rng.integers(2, 6, 10))
    y = np.array([int(g[1:]) % 2 for g in groups])
    splits = _inner_splits(y, groups, seed=0, cv_folds=3, info={})
    assert len(splits) == 3
    for train, val in splits:
        assert not set(groups[train]) & set(groups[val])


def test_one_training_patient_skips_the_search_and_says_so():
    train, test = make_sets(patients=2, per_patient=4)
    one_patient = train_set(train.y, list(train), patients=np.full(8, "P0"))
    method = registry.create("pftas_svm").fit(one_patient)
    assert "skipped" in method.fit_info()["search"]
    assert method.fit_info()["settings"] == {"C": 10.0, "gamma": pytest.approx(1 / 162)}
    assert np.allclose(method.predict_proba(test).sum(axis=1), 1)


@pytest.mark.parametrize("classifier", sorted(CLASSIFIERS))
def test_classes_smaller_than_the_inner_folds_get_fewer_folds_not_a_crash(classifier):
    """As in a per-magnification training set of the official folds: 4 patients, 2 images per class,
    3 inner folds asked (StratifiedGroupKFold refuses more folds than the largest class has images)."""
    train, test = make_sets(patients=4, per_patient=1)
    method = registry.create(f"glcm_{classifier}", cv_folds=3).fit(train)
    info = method.fit_info()
    if classifier in ("qda", "rf"):  # the ones that search settings and keep both classes
        assert info["search"]["folds"] == 2 and info["search_folds"] == "2 instead of 3: the largest class has 2 images"
    if classifier == "qda":  # one image per class in each inner fit: every fit fails, which scikit-learn raises
        assert info["search"]["note"] == "every candidate failed on every fold; first grid values used"
    assert np.allclose(method.predict_proba(test).sum(axis=1), 1)


def test_classes_of_one_image_each_skip_the_search_and_say_so():
    train, _ = make_sets(patients=2, per_patient=1)
    method = registry.create("glcm_rf").fit(train)
    assert method.fit_info()["search"].startswith("skipped: the largest class has 1 image(s)")
    assert method.fit_info()["settings"]["min_samples_leaf"] == 1


def test_a_training_set_with_one_learnable_class_predicts_it():
    train, test = make_sets(labels=(1,), patients=3)
    method = registry.create("lbp_qda").fit(train)
    assert "only class 1" in method.fit_info()["note"]
    assert np.array_equal(method.predict_proba(test), np.tile([0.0, 1.0], (6, 1)))


@pytest.mark.parametrize("classes", [2, 8])
def test_the_svm_on_a_precomputed_kernel_is_libsvms_rbf_svm(classes):
    # RbfSVC hands libsvm the Gram matrix instead of letting it evaluate the kernel pair by pair
    # (far cheaper at BreaKHis size); the model must be the one libsvm finds by itself.
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    from bhbench_baselines.handcrafted.kernel_svm import RbfSVC

    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 300)
    X = rng.normal(size=(300, 40)) + 0.4 * rng.normal(size=(classes, 40))[y]
    test = rng.normal(size=(80, 40)) + 0.4 * rng.normal(size=(classes, 40))[rng.integers(0, classes, 80)]
    for C, gamma in [(10.0, 1 / 40), (1.0, 0.1 / 40), (100.0, 10 / 40)]:
        ours, libsvm = RbfSVC(C=C, gamma=gamma).fit(X, y), SVC(C=C, gamma=gamma).fit(X, y)
        assert np.array_equal(ours.svc_.support_, libsvm.support_)
        np.testing.assert_allclose(ours.svc_.dual_coef_, libsvm.dual_coef_, rtol=0, atol=1e-9)
        np.testing.assert_allclose(ours.decision_function(test), libsvm.decision_function(test), atol=1e-9)
        assert np.array_equal(ours.predict(test), libsvm.predict(test))
    calibrated = [CalibratedClassifierCV(m, method="sigmoid", cv=3, ensemble=False) for m in (ours, libsvm)]
    p_ours, p_libsvm = (c.fit(X, y).predict_proba(test) for c in calibrated)
    np.testing.assert_allclose(p_ours, p_libsvm, atol=1e-9)


def test_the_svm_search_computes_each_folds_distances_once_and_gets_the_same_kernels(monkeypatch):
    # 9 (C, gamma) candidates on 3 inner folds need 3 training and 3 test distance matrices, not 54;
    # kernels made from the kept ones equal scikit-learn's rbf_kernel exactly.
    from sklearn.metrics import pairwise
    from sklearn.metrics.pairwise import rbf_kernel

    from bhbench_baselines.handcrafted import classifiers, kernel_svm

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(12), 10)
    y = groups % 2
    X = rng.normal(size=(120, 20)) + y[:, None]
    calls = []
    original = pairwise.euclidean_distances
    monkeypatch.setattr(kernel_svm, "euclidean_distances", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(kernel_svm, "_distances", OrderedDict())  # none kept from earlier tests
    info: dict = {}
    splits = classifiers._inner_splits(y, groups, 0, 3, info)
    svm = CLASSIFIERS["svm"]
    chosen = classifiers._search(svm, {}, svm.grid(20), X, y, splits, 0, info)
    assert len(info["search"]["scores"]) == 9 and len(calls) == 6
    assert chosen in [dict(C=C, gamma=g) for C in svm.grid(20)["C"] for g in svm.grid(20)["gamma"]]
    for gamma in (0.05, 0.5):
        assert np.array_equal(kernel_svm.rbf(X, None, gamma), rbf_kernel(X, gamma=gamma))
        assert np.array_equal(kernel_svm.rbf(X[:7], X, gamma), rbf_kernel(X[:7], X, gamma=gamma))
    assert np.array_equal(kernel_svm.rbf(X + 1, None, 0.5), rbf_kernel(X + 1, gamma=0.5))  # new content: new distances


def test_the_qda_search_fits_the_pca_once_per_inner_fold_and_scores_as_without_sharing(monkeypatch):
    from sklearn.decomposition import PCA
    from sklearn.model_selection import cross_val_score

    from bhbench_baselines.handcrafted import classifiers

    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 10)
    y = groups % 2
    X = rng.normal(size=(120, 30)) + y[:, None]
    qda = CLASSIFIERS["qda"]
    settings = {"pca_components": 8}
    info: dict = {}
    splits = classifiers._inner_splits(y, groups, 0, 3, info)
    fits = []
    original = PCA.fit_transform
    monkeypatch.setattr(PCA, "fit_transform", lambda self, *a, **k: fits.append(1) or original(self, *a, **k))
    classifiers._search(qda, settings, qda.grid(30), X, y, splits, 0, info)
    assert len(fits) == 3  # not 4 candidates x 3 folds
    for reg_param, score in zip(qda.grid(30)["reg_param"], info["search"]["scores"], strict=True):
        alone = cross_val_score(qda.build({**settings, "reg_param": reg_param}, 0, False), X, y, cv=splits)
        assert score == round(float(alone.mean()), 4)


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("lpq_1nn", {"window": 4}, "lpq_1nn: window=4 is not allowed: expected an integer >= 3 in steps of 2"),
        ("lbp_svm", {"cv_folds": 1}, "lbp_svm: cv_folds=1 is not allowed: expected an integer >= 2"),
        ("lbp_rf", {"seed": "x"}, "lbp_rf: seed='x' is not allowed: expected an integer >= 0"),
        ("lbp_qda", {"pca_components": None}, "lbp_qda: pca_components=None is not allowed: expected an integer >= 1"),
        ("clbp_qda", {"P": 255}, "clbp_qda: P=255 is not allowed: expected an integer >= 1 and <= 254"),
        ("lbp_svm", {"R": 0}, "lbp_svm: R=0 is not allowed: expected a number > 0"),
        ("lpq_svm", {"rho": 1.0}, "lpq_svm: rho=1.0 is not allowed: expected a number >= 0 and < 1"),
        ("glcm_rf", {"max_features": 0}, "expected 'sqrt' or 'log2' or a number > 0 and <= 1"),
    ],
)
def test_bad_parameters_are_one_line_before_any_fit(name, values, message):
    with pytest.raises(UserError) as caught:
        params.resolve([name], values)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_declared_values_reach_the_descriptor_and_classifier_unchanged(binary_sets):
    chosen = params.resolve(["lpq_svm"], {"window": 5, "C": 2})["lpq_svm"]
    assert chosen == {"window": 5, "C": 2.0}  # an integer where a number is declared becomes a float
    method = registry.create("lpq_svm", **chosen).fit(binary_sets[0])
    assert method.spec().as_dict()["params"]["window"] == 5 and method.fit_info()["settings"]["C"] == 2.0


# --- feature cache ----------------------------------------------------------------------------


@pytest.fixture
def stored(tmp_path, monkeypatch) -> tuple[TrainSet, Path, list[Path]]:
    """A training set whose images sit in an ImageStore (so they have content keys), with a
    private BHBENCH_CACHE for features."""
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path / "cache"))
    made, _ = make_sets(patients=4, per_patient=2)
    store = ImageStore(tmp_path / "images")
    paths = []
    for i, rgb in enumerate(made):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rgb).save(paths[-1])
        store.put(content_key(paths[-1]), paths[-1])
    keys = [content_key(p) for p in paths]
    return train_set(made.y, keys=keys, store=str(store.root), patients=made.patient), store.root, paths


@pytest.fixture
def compute_calls(monkeypatch) -> list[str]:
    """Names of the descriptors actually computed (the cache misses), in any thread."""
    calls: list[str] = []
    lock = threading.Lock()
    original = DescriptorSpec.compute

    def counting(self: DescriptorSpec, rgb: np.ndarray) -> np.ndarray:
        with lock:
            calls.append(self.name)
        return original(self, rgb)

    monkeypatch.setattr(DescriptorSpec, "compute", counting)
    return calls


def test_features_are_computed_once_and_shared_by_all_classifiers(stored, compute_calls):
    train, *_ = stored
    for classifier in CLASSIFIERS:
        registry.create(f"lbp_{classifier}").fit(train)
    assert compute_calls == ["lbp"] * len(train)


def test_a_second_extraction_reads_everything_from_the_cache(stored):
    train, *_ = stored
    specs = [DESCRIPTORS[name].spec() for name in ("glcm", "pftas")]
    cold = extract(train, specs)
    warm = extract(train, specs)
    assert cold.computed == 2 * len(train) and warm.computed == 0
    for a, b in zip(cold.features, warm.features, strict=True):
        assert np.array_equal(a, b)
    about = json.loads((FeatureCache(specs[0]).root / "spec.json").read_text())
    assert about == specs[0].as_dict()


def test_a_changed_parameter_invalidates_only_its_own_features(stored):
    train, *_ = stored
    default, changed, other = DESCRIPTORS["lbp"].spec(), DESCRIPTORS["lbp"].spec(P=16, R=2), DESCRIPTORS["orb"].spec()
    extract(train, [default, other])
    again = extract(train, [default, changed, other])
    assert again.computed == len(train)  # the new spec only
    assert again.features[1].shape == (len(train), 18)


def test_a_changed_image_invalidates_only_that_image(stored):
    train, store_root, paths = stored
    spec = DESCRIPTORS["glcm"].spec()
    extract(train, [spec])
    Image.fromarray(255 - np.asarray(Image.open(paths[0]))).save(paths[0])
    new_key = content_key(paths[0])
    ImageStore(store_root).put(new_key, paths[0])
    changed = train_set(train.y, keys=[new_key, *train.cache_keys[1:]], store=str(store_root), patients=train.patient)
    result = extract(changed, [spec])
    assert result.computed == 1
    assert not np.allclose(result.features[0][0], extract(train, [spec]).features[0][0])


def test_a_corrupt_cache_file_is_recomputed(stored):
    train, *_ = stored
    spec = DESCRIPTORS["lbp"].spec()
    first = extract(train, [spec]).features[0]
    FeatureCache(spec).path(train.cache_keys[2]).write_bytes(b"not an npy file")
    again = extract(train, [spec])
    assert again.computed == 1 and np.array_equal(again.features[0], first)


def test_image_sets_without_keys_bypass_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path))
    train, _ = make_sets(patients=2, per_patient=2)
    images = list(train)
    test = TestSet.build("binary", images=images)
    spec = DESCRIPTORS["orb"].spec()
    assert extract(test, [spec]).computed == len(images)
    assert extract(test, [spec]).computed == len(images)
    assert not list(tmp_path.rglob("*.npy"))


def test_an_image_missing_from_the_image_cache_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BHBENCH_CACHE", str(tmp_path))
    test = TestSet.build("binary", keys=["ab" * 16], store=str(tmp_path / "images"))
    with pytest.raises(DataError, match="not in the image cache"):
        extract(test, [DESCRIPTORS["lbp"].spec()])
