"""--train-fraction (a learning curve's points) and --train-mags / --test-mags (cross-magnification
transfer): what each fold trains and scores on, the protocol they make, their errors, their figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bhbench import runner, session
from bhbench.cli import main
from bhbench.protocol import Protocol
from bhbench.splits import Fold, Split, fewer_patients, patient_of


def _plan(tree: Path, tmp_path: Path, **protocol) -> runner.Plan:
    options = runner.Options(results=tmp_path / "plan-results")
    return session.prepare(session.Where(tree, **protocol), options, lambda event: None)


def _patients(names: list[str]) -> set[str]:
    return {patient_of(n) for n in names}


@pytest.fixture(scope="module")
def full(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> runner.Plan:
    return _plan(tiny_tree, tmp_path_factory.mktemp("full"))


def _classes(plan: runner.Plan, names: list[str]) -> Counter:
    rows = plan.dataset.table.set_index("filename").loc[names].drop_duplicates("patient")
    return Counter(rows["tumor_class"])


def test_a_fraction_draws_whole_patients_stratified_and_keeps_the_test_side(full, tiny_tree, tmp_path):
    part = _plan(tiny_tree, tmp_path, train_fraction=0.25)
    for whole, fewer in zip(full.split.folds, part.split.folds, strict=True):
        assert fewer.test == whole.test
        kept = _patients(fewer.train)
        assert kept < _patients(whole.train)
        assert sorted(fewer.train) == sorted(n for n in whole.train if patient_of(n) in kept)  # whole patients
        for tumour, n in _classes(full, whole.train).items():
            assert _classes(part, fewer.train)[tumour] == max(1, round(0.25 * n))


def test_the_draw_is_deterministic_and_seeded_by_seed_and_fold(full):
    table, first = full.dataset.table, full.split.folds[0]
    twin = Split(full.split.kind, [first, Fold(2, first.train, first.test)], "")  # fold 1's sides twice

    def drawn(seed: int) -> list[set[str]]:
        return [_patients(f.train) for f in fewer_patients(twin, table, Protocol(seed=seed, train_fraction=0.5)).folds]

    assert drawn(0) == drawn(0)
    assert drawn(0)[0] != drawn(0)[1] and drawn(0)[0] != drawn(1)[0]


def test_a_class_with_one_patient_keeps_it(full):
    protocol = Protocol(task="subtype", train_fraction=0.01)
    drawn = fewer_patients(full.split, full.dataset.table, protocol)
    subtypes = full.dataset.table.set_index("filename")["subtype"]
    for whole, fewer in zip(full.split.folds, drawn.folds, strict=True):
        assert set(subtypes[fewer.train]) == set(subtypes[whole.train])


def test_protocol_ids_keep_old_records_and_tell_new_ones_apart():
    plain = Protocol()
    ids = {
        Protocol(train_fraction=0.5).id,
        Protocol(train_fraction=0.25).id,
        Protocol(train_mags=(40, 100), test_mags=(400,)).id,
        Protocol(train_mags=(40,), test_mags=(400,)).id,
        Protocol(test_mags=(400,)).id,
        plain.id,
    }
    assert len(ids) == 6
    assert plain.id == "binary-mi-patient-seed0" and set(plain.to_json()) == {
        "task", "regime", "split", "magnification", "seed", "id"
    }  # fmt: skip
    assert Protocol(train_mags=(100, 40)) == Protocol(train_mags=(40, 100))  # one protocol, one id
    assert "25% of training patients" in Protocol(train_fraction=0.25).title


def test_cross_magnification_trains_at_some_and_scores_at_others(run_toy):
    result = run_toy("toy", train_mags=(40, 100), test_mags=(400,))
    table = result.plan.dataset.table.set_index("filename")["magnification"]
    for fold in result.plan.split.folds:
        assert set(table[fold.train]) == {40, 100} and set(table[fold.test]) == {400}
    for record in result.records:
        assert record.ok and record.protocol.train_mags == (40, 100)
        assert set(record.metrics.by_magnification) == {"400"}


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--train-fraction", "1.5"], "train fraction 1.5"),
        (["--train-fraction", "0"], "train fraction 0"),
        (["--train-mags", "40,50"], "train magnifications [40, 50]"),
        (["--train-mags", "40", "--regime", "ms"], "need the mi regime"),
        (["--test-mags", "400", "--mag", "40"], "magnification 40"),
    ],
)
def test_bad_values_are_one_line_errors(options, named, tiny_tree, tmp_path, capsys):
    code = main(["run", "--method", "lbp_svm", "--data", str(tiny_tree), "--results", str(tmp_path), *options])
    err = capsys.readouterr()
    lines = [line for line in (err.out + err.err).splitlines() if "error:" in line]
    assert code == 2 and len(lines) == 1 and named in lines[0] and "Traceback" not in err.out + err.err
    assert not list(tmp_path.rglob("*.json"))  # no record written


def test_a_misspelt_magnification_list_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "--method", "lbp_svm", "--train-mags", "forty"])
    assert stop.value.code == 2 and "'forty'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["run", "--method", "toy"], ["tune", "--method", "toy", "--trials", "2"], ["audit", "--method", "toy"]]
)
def test_every_protocol_command_takes_the_subsets(command):
    from bhbench.cli import build_parser
    from bhbench.cli.common import api_kwargs

    args = build_parser().parse_args(
        [*command, "--train-fraction", "0.5", "--train-mags", "40X,100", "--test-mags", "400"]
    )
    where = api_kwargs(args)["where"]
    assert (where.train_fraction, where.train_mags, where.test_mags) == (0.5, (40, 100), (400,))
    where = api_kwargs(build_parser().parse_args(command))["where"]
    assert (where.train_fraction, where.train_mags, where.test_mags) == (1.0, None, None)


@pytest.mark.slow  # three runs of the toy
def test_the_figures_draw_a_learning_curve_and_a_transfer_matrix(run_toy):
    from bhbench.leaderboard import curves
    from bhbench.leaderboard.aggregate import sections
    from bhbench.leaderboard.verify import check_all

    results = run_toy("toy").results
    run_toy("toy", train_fraction=0.5)
    run_toy("toy", train_mags=(40,), test_mags=(400,))
    table = curves.points(sections(check_all(results)))
    assert sorted(table["train_fraction"]) == [0.5, 1.0, 1.0]
    grid = curves.transfer_grid(table, "toy")
    assert not np.isnan(grid[0, 3]) and np.isnan(grid).sum() == 15  # trained at 40X, tested at 400X only
    for figure in (curves.learning_curve(table, "toy"), curves.transfer_matrix(table, "toy", "toy")):
        assert figure.startswith(b"<?xml") and b"</svg>" in figure
    assert b"not run" in curves.transfer_matrix(table, "toy", "toy")


@pytest.mark.slow  # three runs of the toy
def test_a_liu_name_names_the_whole_protocol_beside_its_subsets(run_toy):
    from bhbench import reproduce

    whole = run_toy("toy")
    run_toy("toy", train_fraction=0.5)
    run_toy("toy", test_mags=(400,))
    found = reproduce.resolve(f"{whole.plan.dataset.id}/MIBC/toy", whole.results)
    assert found and all(
        p.is_relative_to(whole.results / whole.plan.dataset.id / whole.plan.protocol.id) for p in found
    )
