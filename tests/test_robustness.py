"""Test-time stain shift (`bhbench robustness`): seeded per image, one fit per fold serves every
strength, records beside the row's that the board verifies, and clear errors."""

from __future__ import annotations

import contextlib
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from conftest import toy_source

from bhbench import api, perturb
from bhbench.cli import main
from bhbench.data.images import ImageStore
from bhbench.leaderboard import robustness as robust

# Counts the toy's fits in a file the test names (the worker inherits the environment; no sandbox).
COUNT_FITS = "import os; open(os.environ['TOY_FITS'], 'a').write('fit\\n')"


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((32, 32, 3), 235, dtype=np.uint8)
    img[8:24, 8:24] = rng.integers([90, 30, 120], [140, 80, 180], size=(16, 16, 3))  # a purple blot
    return img


def test_a_shift_is_seeded_by_image_strength_and_seed_and_grows_with_strength(tmp_path):
    store = ImageStore(tmp_path / "store")
    keys = ["a" * 32, "b" * 32]
    for k, seed in zip(keys, (1, 2), strict=True):
        store.save(k, _image(seed))
    shift = perturb.Shift((0.0, 0.1, 0.4), seed=0)
    staged = shift.stage(keys, store)
    assert staged[0.0] == keys  # strength 0 is the image itself
    for s in (0.1, 0.4):
        assert staged[s] == [perturb.Shift(seed=0).key(k, s) for k in keys] and not set(staged[s]) & set(keys)
    # the same draw in a fresh store: the pixels are a function of (content key, strength, seed)
    first = store.load(staged[0.4][0])
    fresh = ImageStore(tmp_path / "fresh")
    fresh.save(keys[0], _image(1))
    assert np.array_equal(fresh.load(perturb.Shift((0.4,), seed=0).stage(keys[:1], fresh)[0.4][0]), first)
    other_seed = perturb.Shift((0.4,), seed=1).stage(keys[:1], fresh)[0.4][0]
    assert not np.array_equal(fresh.load(other_seed), first)

    def change(s: float) -> float:
        return float(np.abs(store.load(staged[s][1]).astype(int) - _image(2).astype(int)).mean())

    assert 0 < change(0.1) < change(0.4)


def test_robustness_fits_once_per_fold_and_its_strength_zero_is_the_plain_run(
    run_toy, submissions, tiny_tree, tmp_path, monkeypatch
):
    fits = tmp_path / "fits.txt"
    monkeypatch.setenv("TOY_FITS", str(fits))
    (submissions / "toy.py").write_text(toy_source("toy", fit_body=COUNT_FITS))
    run_toy("toy", mag=40, sandbox="off")
    fits.unlink()
    done = api.robustness("toy", api.Where(tiny_tree, mag=40), strengths=(0.1, 0.4), submissions=submissions,
                          results=tmp_path / "results", sandbox="off")  # fmt: skip
    assert done.ok and done.curve is not None
    assert fits.read_text().count("fit") == len(done.jobs) == 5  # one fit per fold for all three strengths
    assert done.curve.strengths == (0.0, 0.1, 0.4) and done.curve.drop[0] == 0
    for job in done.jobs:
        record = job.record
        assert record.perturbation is not None and record.perturbation.strengths == (0.0, 0.1, 0.4)
        frame = pd.read_csv(job.job.where.predictions)
        assert frame.groupby("strength").size().to_dict() == {0.0: record.split.n_test, 0.1: record.split.n_test,
                                                            0.4: record.split.n_test}  # fmt: skip
        ordinary = pd.read_csv(job.job.where.folder / f"fold{job.job.fold.index}.predictions.csv")
        zero = frame[frame["strength"] == 0].drop(columns="strength").sort_values("filename")
        pd.testing.assert_frame_equal(
            zero.reset_index(drop=True), ordinary.sort_values("filename").reset_index(drop=True)
        )
    # the ordinary records stay the row's folds; a second call reuses the robustness records
    fits.unlink()
    assert sorted(p.name for p in done.folder.glob("fold*.json")) == [f"fold{i}.json" for i in range(1, 6)]
    again = api.robustness("toy", api.Where(tiny_tree, mag=40), strengths=(0.1, 0.4), submissions=submissions,
                           results=tmp_path / "results", sandbox="off")  # fmt: skip
    assert all(j.skipped for j in again.jobs) and not fits.exists()
    assert np.array_equal(again.curve.headline, done.curve.headline)


def test_a_robustness_record_whose_predictions_were_edited_is_refused(run_toy, submissions, tiny_tree, tmp_path):
    (submissions / "toy.py").write_text(toy_source("toy"))
    done = api.robustness("toy", api.Where(tiny_tree, mag=40), strengths=(0.2,), submissions=submissions,
                          results=tmp_path / "results", sandbox="off")  # fmt: skip
    assert done.ok
    path = done.jobs[0].job.where
    frame = pd.read_csv(path.predictions)
    frame = frame[frame["strength"] == 0]  # the shifted images' predictions dropped, hash fixed up
    record = json.loads(path.record.read_text())
    blob = frame.to_csv(index=False).encode()
    path.predictions.write_bytes(blob)
    record["predictions"]["sha256"] = hashlib.sha256(blob).hexdigest()
    path.record.write_text(json.dumps(record))
    found = robust.checked([tmp_path / "results"])
    bad = [c for c in found if c.path == path.record]
    assert bad and "strengths [0.0] are not the record's" in bad[0].problems[0]


@pytest.mark.parametrize("value", ["1.5", "x"])
def test_a_bad_strength_is_one_line_and_a_non_zero_exit(value, submissions, tiny_tree, tmp_path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy"))
    with pytest.raises(SystemExit) if value == "x" else contextlib.nullcontext():
        code = main(["--submissions", str(submissions), "robustness", "-m", "toy", "--data", str(tiny_tree),
                     "--results", str(tmp_path / "r"), "--strengths", value, "--sandbox", "off"])  # fmt: skip
        assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("--strengths" in err) and (value in err)
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").rglob("robustness-*"))


def test_the_board_shows_the_drop_and_the_penalty_and_check_catches_an_edited_record(run_toy, submissions, tiny_tree,
                                                                                       tmp_path):  # fmt: skip
    from bhbench import leaderboard

    results = tmp_path / "results"
    for split in ("cross-stain", "stain-random", "patient"):
        assert run_toy("toy", split=split, mag=40).ok
    where = api.Where(tiny_tree, mag=40)
    done = api.robustness("toy", where, strengths=(0.2,), submissions=submissions, results=results, sandbox="off")
    board = tmp_path / "board"
    checked = leaderboard.write([results], board)
    assert all(c.accepted for c in checked)
    text = (board / "README.md").read_text()
    section = text[text.index("## Robustness to stain") :]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("| toy ")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["toy", "none", f"{100 * done.curve.headline[0]:.1f}"]
    assert cells[3] == f"{100 * done.curve.drop[1]:+.1f} [{100 * done.curve.drop_low[1]:+.1f}, " \
                       f"{100 * done.curve.drop_high[1]:+.1f}]"  # fmt: skip
    assert cells[4] != "–"  # the stain-shift penalty of the cross-stain and stain-random sections
    figure = next(board.glob("figures/robustness-*.svg"))
    assert f"figures/{figure.name}" in section
    assert leaderboard.stale([results], board) == []
    where = done.jobs[0].job.where
    where.predictions.write_text(where.predictions.read_text().replace("0.", "0.9", 1))
    assert any(str(where.record) in reason for reason in leaderboard.stale([results], board))


def test_prune_keeps_finished_robustness_records_and_removes_damaged_ones(submissions, tiny_tree, tmp_path, capsys):
    (submissions / "toy.py").write_text(toy_source("toy"))
    out = tmp_path / "results"
    done = api.robustness("toy", api.Where(tiny_tree, mag=40), strengths=(0.2,), submissions=submissions,
                          results=out, sandbox="off")  # fmt: skip
    assert done.ok
    assert main(["results", "prune", "--results", str(out)]) == 0
    kept = sorted(out.rglob("robustness-fold*"))
    assert len(kept) == 2 * len(done.jobs)  # a record and its predictions per fold, all kept
    edited = done.jobs[0].job.where
    edited.predictions.write_text(edited.predictions.read_text().replace("0.", "1.", 1))
    orphan = done.jobs[1].job.where
    orphan.record.unlink()
    capsys.readouterr()
    assert main(["results", "prune", "--results", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{edited.record.name}: its predictions are missing or changed" in err
    assert not edited.record.exists() and not edited.predictions.exists() and not orphan.predictions.exists()
    assert len(list(out.rglob("robustness-fold*"))) == len(kept) - 4  # one deleted by hand, three pruned
