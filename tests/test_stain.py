"""--stain-norm: the harness normalises every image a method is handed to a target fitted on the
fold's training images only, records the target, keeps the protocol apart, and caches its work."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
import pytest

from bhbench import runner, session, stain
from bhbench.data.images import decode

# A method whose fit_info is the mean colour of the full-resolution training images it was handed.
COLOUR = """
import numpy as np
from bhbench import Method, register


@register("colour", family="test", reference="bhbench tests")
class Colour(Method):
    def fit(self, train):
        self.colour_ = np.mean([train.image(i).reshape(-1, 3).mean(0) for i in range(len(train))], axis=0)
        self.n_ = train.n_classes
        return self

    def fit_info(self):
        return {"colour": self.colour_.tolist()}

    def predict_proba(self, test):
        return np.full((len(test), self.n_), 1 / self.n_)
"""


def _plan(tree: Path, tmp_path: Path) -> runner.Plan:
    options = runner.Options(results=tmp_path / "plan-results")
    return session.prepare(session.Where(tree, stain_norm="macenko"), options, lambda event: None)


def _target(tree: Path, tmp_path: Path) -> dict:
    plan = _plan(tree, tmp_path)
    return plan, runner.normaliser(plan, plan.split.folds[0]).target.params


def _tint(path: Path) -> None:
    """Redraw an image in other stains: strongly shifted hue, same tissue."""
    img = decode(path)
    img[..., 1] = img[..., 1] // 2
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _as_handed(norm: stain.Normaliser, img: np.ndarray) -> np.ndarray:
    """An image as the method should get it: normalised, or as it is where it has no stain to find."""
    try:
        return norm.apply(img)
    except stain.StainError:
        return img


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_normalised_run_records_the_target_under_its_own_protocol(run_toy, method):
    raw = run_toy("toy")
    normalised = run_toy("toy", stain_norm=method)
    assert not normalised.failed
    protocol = normalised.records[0].protocol
    assert protocol.id == f"{raw.records[0].protocol.id}-{method}"
    assert f"{method.capitalize()}-normalised" in protocol.title
    targets = [r.stain_target for r in normalised.records]
    keys = {"macenko": {"stain_matrix", "max_concentrations"}, "reinhard": {"means", "stds"}}[method]
    assert all(t is not None and t.method == method and set(t.params) == keys for t in targets)
    assert len({t.digest for t in targets}) == len(targets)  # one target per fold, from its own training images
    assert raw.records[0].stain_target is None
    assert normalised.records[0].environment.versions["torchstain"] == metadata.version("torchstain")
    written = json.loads(normalised.jobs[0].job.where.record.read_text())
    assert written["protocol"]["stain_norm"] == method and written["stain_target"]["method"] == method
    plain = json.loads(raw.jobs[0].job.where.record.read_text())
    assert "stain_norm" not in plain["protocol"] and "stain_target" not in plain  # old records' bytes


@pytest.mark.filterwarnings("ignore:Degrees of freedom|Mean of empty slice:RuntimeWarning")  # _as_handed's failures
def test_the_method_sees_the_normalised_pixels(run_toy):
    raw = run_toy("colour", source=COLOUR).records[0]
    normalised = run_toy("colour", stain_norm="macenko")
    record = normalised.records[0]
    plan = normalised.plan
    fold = next(f for f in plan.split.folds if f.index == record.split.fold)
    keys = plan.dataset.table.set_index("filename").loc[sorted(fold.train), "key"]
    norm = stain.Normaliser(record.stain_target)
    expected = np.mean([_as_handed(norm, plan.store.load(k)).reshape(-1, 3).mean(0) for k in keys], axis=0)
    seen = np.array(record.method.fit_info["colour"])
    np.testing.assert_allclose(seen, expected, rtol=1e-9)
    assert np.abs(seen - np.array(raw.method.fit_info["colour"])).max() > 1.0


def test_the_target_is_estimated_from_training_patients_only(tree_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(stain, "REFERENCE_IMAGES", 10_000)  # every training image counts
    plan, before = _target(tree_copy, tmp_path)
    fold = plan.split.folds[0]
    rows = plan.dataset.table.set_index("filename")
    test_patient = rows.loc[sorted(fold.test)[0], "patient"]
    for name in rows.index[rows["patient"] == test_patient]:
        _tint(plan.dataset.path(rows.loc[name, "relpath"]))
    assert _target(tree_copy, tmp_path)[1] == before
    _tint(plan.dataset.path(rows.loc[sorted(fold.train)[0], "relpath"]))
    assert _target(tree_copy, tmp_path)[1] != before


def test_normalised_images_are_cached_for_reruns(run_toy, monkeypatch):
    assert not run_toy("toy", stain_norm="reinhard").failed

    def recompute(self, img):
        raise AssertionError("a cached normalised image was made again")

    monkeypatch.setattr(stain.Normaliser, "apply", recompute)
    again = run_toy("toy", stain_norm="reinhard", force=True)
    assert not again.failed and len(again.records) == 5


def test_an_image_without_stain_is_handed_over_as_it_is_and_named(tree_copy, run_toy):
    plan = _plan(tree_copy, tree_copy.parent)
    fold = plan.split.folds[0]
    pale = sorted(fold.test)[0]
    path = plan.dataset.path(plan.dataset.table.set_index("filename").loc[pale, "relpath"])
    cv2.imwrite(str(path), np.full((84, 128, 3), 250, np.uint8))  # background only
    ran = run_toy("toy", data=tree_copy, stain_norm="macenko")
    assert not ran.failed
    notes = {r.split.fold: [w for w in r.warnings if "stain" in w] for r in ran.records}
    assert any(f"handed over as they are (e.g. {pale})" in w for w in notes[fold.index])
    assert any(pale in w for w in ran.warnings)


def test_a_reference_without_stain_fails_the_fold_with_one_reason(tree_copy, run_toy):
    for path in tree_copy.rglob("*.png"):
        cv2.imwrite(str(path), np.full((84, 128, 3), 250, np.uint8))
    ran = run_toy("toy", data=tree_copy, stain_norm="macenko")
    assert ran.failed and len(ran.failed) == len(ran.records)
    assert ran.records[0].error.startswith("macenko stain normalisation: the fold's training reference has no stain")


def test_a_liu_name_names_the_raw_protocol_beside_a_normalised_one(run_toy, tmp_path):
    from bhbench import reproduce

    raw = run_toy("toy")
    run_toy("toy", stain_norm="reinhard")
    found = reproduce.resolve(f"{raw.plan.dataset.id}/MIBC/toy", raw.results)
    assert found and all(p.is_relative_to(raw.results / raw.plan.dataset.id / raw.plan.protocol.id) for p in found)


@pytest.mark.parametrize(
    "command", [["run", "--method", "toy"], ["tune", "--method", "toy", "--trials", "2"], ["audit", "--method", "toy"]]
)
def test_every_protocol_command_takes_stain_norm(command):
    from bhbench.cli import build_parser
    from bhbench.cli.common import api_kwargs

    args = build_parser().parse_args([*command, "--stain-norm", "macenko"])
    assert api_kwargs(args)["where"].stain_norm == "macenko"
    assert api_kwargs(build_parser().parse_args(command))["where"].stain_norm == "none"
