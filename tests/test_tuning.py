"""Leak-free tuning: inner validation inside each fold's training patients, per-fold studies
shared across processes, and tuned parameters that `bhbench run --params` uses and records."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import toy_source

from bhbench import api, registry, runner, tuning
from bhbench.cli import main
from bhbench.data.sources import open_dataset
from bhbench.errors import UserError
from bhbench.events import Message
from bhbench.protocol import Protocol
from bhbench.splits import Fold

# The toy with a search space, and a `log` parameter: every fit and predict appends the content
# keys it was given, so a test can see exactly which images tuning showed the method.
TUNABLE = toy_source("toy_tunable") + textwrap.dedent('''

    import json


    @register("toy_spy", family="test", reference="bhbench tests")
    class Spy(Toy):
        """Toy that logs the images it sees."""

        def __init__(self, size: int = 16, seed: int = 0, log: str = ""):
            self.size = size
            self.seed = seed
            self.log = log

        @classmethod
        def search_space(cls, trial):
            return {"size": trial.suggest_categorical("size", [8, 12, 16])}

        def _features(self, images):
            if self.log:
                with open(self.log, "a") as fh:
                    fh.write(json.dumps({"n": len(images), "keys": list(images.cache_keys or [])}) + "\\n")
            return super()._features(images)
''')


@pytest.fixture
def tunable(submissions: Path) -> Path:
    (submissions / "toy.py").write_text(TUNABLE)
    registry.discover(submissions)
    return submissions


def _plan(tree: Path, tmp_path: Path, submissions: Path) -> runner.Plan:
    options = runner.Options(results=tmp_path / "plan", submissions=submissions)
    return runner.make_plan(open_dataset(tree), Protocol(), None, options)


def test_a_method_without_search_space_is_refused_clearly(submissions: Path):
    (submissions / "toy.py").write_text(toy_source("toy_fixed"))
    with pytest.raises(UserError, match=r"toy_fixed declares no search space.*search_space\(cls, trial\)"):
        api.tune("toy_fixed", 1, submissions=submissions)


def test_inner_validation_splits_training_patients_only_and_by_patient(tiny_tree: Path, tmp_path: Path, tunable):
    plan = _plan(tiny_tree, tmp_path, tunable)
    table = plan.dataset.table.set_index("filename")
    for fold in plan.split.folds:
        inner = tuning.inner_fold(plan, fold)
        assert set(inner.train) | set(inner.test) == set(fold.train)
        train_p, val_p = (set(table.loc[inner.train, "patient"]), set(table.loc[inner.test, "patient"]))
        assert not train_p & val_p
        assert set(table.loc[inner.test, "tumor_class"]) == {"B", "M"}
        assert 0.15 < len(val_p) / len(train_p | val_p) < 0.35


def test_too_few_images_of_every_class_to_tune_on_is_a_clear_error(tiny_tree: Path, tmp_path: Path, tunable):
    # Six patients, but three images of each class: the stratified splitter could not make four folds.
    plan = _plan(tiny_tree, tmp_path, tunable)
    table = plan.dataset.table.set_index("filename").loc[sorted(plan.split.folds[0].train)]
    few = sorted(table.drop_duplicates("patient").groupby("tumor_class").head(3).index)
    assert len(few) == 6
    with pytest.raises(UserError, match=r"fold 1: each class has under 4 training images"):
        tuning.inner_fold(plan, Fold(1, few, []))


def test_trials_see_only_the_training_patients_of_their_fold(tiny_tree: Path, tmp_path: Path, tunable):
    plan = _plan(tiny_tree, tmp_path, tunable)
    log = tmp_path / "seen.jsonl"
    options = runner.Options(results=tmp_path / "plan", submissions=tunable)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    doc = tuning.Tuner(plan, "toy_spy", {"log": str(log)}, "c0de", storage, "spy", options).tune(1)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    # One trial per fold, in fold order: a fit on the inner training images, then predictions (the
    # run's own and its contract check's) on inner validation images. The method sees opaque
    # per-partition handles (bhbench.blind), so the test matches images by count; that the inner
    # split holds training patients only is checked on the split itself.
    inners = [tuning.inner_fold(plan, fold) for fold in plan.split.folds]
    fits = [i for i, s in enumerate(seen) if s["n"] in {len(inner.train) for inner in inners}]
    assert [seen[i]["n"] for i in fits] == [len(inner.train) for inner in inners]
    patients = plan.dataset.table.set_index("filename")["patient"]
    for fold, inner, start, end in zip(plan.split.folds, inners, fits, [*fits[1:], len(seen)], strict=True):
        predicted = [s["n"] for s in seen[start + 1 : end]]
        assert predicted and predicted[0] == len(inner.test) and max(predicted) <= len(inner.test)
        assert set(inner.train) | set(inner.test) <= set(fold.train)  # the fold's test patients unused
        assert not set(patients[inner.train]) & set(patients[inner.test])  # grouped by patient
    assert set(doc["folds"]) == {str(f.index) for f in plan.split.folds}
    assert all(f["params"]["size"] in (8, 12, 16) and f["params"]["log"] == str(log) for f in doc["folds"].values())


def _tune(tree: Path, submissions: Path, tmp_path: Path, trials: int, folds: list[int], **kwargs) -> list[str]:
    """api.tune on `tree`'s toy_spy with one storage per test (a journal file unless `storage`); the
    messages it said."""
    said: list[str] = []
    kwargs.setdefault("storage", str(tmp_path / "study.log"))
    api.tune("toy_spy", trials, api.Where(data=tree), only_folds=folds, submissions=submissions,
             out=tmp_path / "tuned.json", progress=lambda e: said.append(e.text) if isinstance(e, Message) else None,
             **kwargs)  # fmt: skip
    return said


def _trials(tmp_path: Path, study: str, storage: str = "") -> list[optuna.trial.FrozenTrial]:
    storage = storage or str(tmp_path / "study.log")
    return optuna.load_study(study_name=study, storage=tuning.open_storage(storage)).trials


def test_trials_is_the_total_per_fold_and_a_rerun_continues_up_to_it(tiny_tree: Path, tmp_path: Path, tunable):
    _tune(tiny_tree, tunable, tmp_path, 2, [1])
    _tune(tiny_tree, tunable, tmp_path, 2, [1])  # the study holds 2 already: nothing to do
    study = json.loads((tmp_path / "tuned.json").read_text())["folds"]["1"]["study"]
    assert len(_trials(tmp_path, study)) == 2
    _tune(tiny_tree, tunable, tmp_path, 3, [1])
    assert [t.state.name for t in _trials(tmp_path, study)] == ["COMPLETE"] * 3


def _running_trial(study: str, storage: str, process: str) -> optuna.Trial:
    """A trial left running by `process` ("host:pid"), as a process killed mid-trial leaves it."""
    trial = optuna.load_study(study_name=study, storage=tuning.open_storage(storage)).ask()
    trial.set_user_attr("process", process)
    return trial


def test_a_trial_whose_process_was_killed_stops_counting_in_a_journal(tiny_tree: Path, tmp_path: Path, tunable):
    _tune(tiny_tree, tunable, tmp_path, 2, [1])
    study = json.loads((tmp_path / "tuned.json").read_text())["folds"]["1"]["study"]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _running_trial(study, str(tmp_path / "study.log"), f"{socket.gethostname()}:{gone.stdout.strip()}")
    _running_trial(study, str(tmp_path / "study.log"), f"{socket.gethostname()}:{os.getpid()}")  # still alive
    _tune(tiny_tree, tunable, tmp_path, 4, [1])
    # The dead process's trial is failed and run again; the living one's still counts.
    assert [t.state.name for t in _trials(tmp_path, study)] == ["COMPLETE", "COMPLETE", "FAIL", "RUNNING", "COMPLETE"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask() leaves the trial running
def test_a_trial_whose_heartbeat_stopped_stops_counting_in_a_database(
    tiny_tree: Path, tmp_path: Path, tunable, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(tuning, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(tuning, "STALE_SECONDS", 1)
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    _tune(tiny_tree, tunable, tmp_path, 1, [1], storage=storage)
    study = json.loads((tmp_path / "tuned.json").read_text())["folds"]["1"]["study"]
    trial = _running_trial(study, storage, "another-machine:1")  # a node lost mid-trial: no pid to ask
    trial.storage.record_heartbeat(trial._trial_id)
    time.sleep(2)
    _tune(tiny_tree, tunable, tmp_path, 2, [1], storage=storage)
    assert [t.state.name for t in _trials(tmp_path, study, storage)] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_an_edited_method_starts_a_new_study_says_so_and_its_file_drops_the_old_folds(
    tiny_tree: Path, tmp_path: Path, tunable
):
    assert not any("changed" in line for line in _tune(tiny_tree, tunable, tmp_path, 1, [1]))
    before = json.loads((tmp_path / "tuned.json").read_text())
    (tunable / "toy.py").write_text(
        TUNABLE.replace("def _features(self, images):", "def _features(self, images):  # edited")
    )
    said = _tune(tiny_tree, tunable, tmp_path, 1, [2])
    after = json.loads((tmp_path / "tuned.json").read_text())
    old, new = before["folds"]["1"]["study"].removesuffix("-fold1"), after["folds"]["2"]["study"].removesuffix("-fold2")
    assert old != new and before["code"] != after["code"]
    assert f"the code of toy_spy changed since study {old}: starting a new study {new}" in said
    # Fold 1 was tuned on the old code: dropped from the file, and the message says why.
    assert list(after["folds"]) == ["2"]
    assert any(f"dropped its fold(s) 1, tuned otherwise (code {before['code']}, now {after['code']})" in line
               for line in said)  # fmt: skip
    assert len(_trials(tmp_path, f"{new}-fold2")) == 1  # a fresh study: the old code's trial is not in it
    # Tuning the new code again continues its study, without a word about the change.
    assert not any("changed" in line for line in _tune(tiny_tree, tunable, tmp_path, 1, [1]))


def test_tuning_fold_by_fold_merges_into_one_file_that_run_accepts(run_toy, tiny_tree: Path, tmp_path: Path, tunable):
    _tune(tiny_tree, tunable, tmp_path, 1, [1, 2, 3])
    _tune(tiny_tree, tunable, tmp_path, 1, [4, 5])
    doc = json.loads((tmp_path / "tuned.json").read_text())
    assert list(doc["folds"]) == ["1", "2", "3", "4", "5"]
    result = run_toy("toy_spy", tuned=[tmp_path / "tuned.json"])
    assert result.ok and [r.method.params["size"] for r in result.records] == [
        doc["folds"][str(k)]["params"]["size"] for k in range(1, 6)
    ]


def test_an_unmergeable_out_file_is_refused_before_any_trial(tiny_tree: Path, tmp_path: Path, tunable):
    (tmp_path / "tuned.json").write_text("{}")
    with pytest.raises(UserError, match=r"--out .*tuned.json: not a file written by `bhbench tune`"):
        _tune(tiny_tree, tunable, tmp_path, 1, [1])
    assert not tuning.open_storage(str(tmp_path / "study.log")).get_all_studies()


def test_ctrl_c_ends_in_one_line_with_the_resume_command(tiny_tree: Path, tmp_path: Path, submissions: Path):
    start = "import sys, time; print('FIT STARTED', file=sys.stderr, flush=True); time.sleep(3)"
    (submissions / "slow.py").write_text(
        toy_source("slow", fit_body=start)
        + "\n    @classmethod\n    def search_space(cls, trial):\n"
        + "        return {'size': trial.suggest_categorical('size', [8, 16])}\n"
    )
    storage = str(tmp_path / "study.log")
    argv = ["--submissions", str(submissions), "tune", "--method", "slow", "--trials", "5", "--fold", "1",
            "--data", str(tiny_tree), "--storage", storage, "--study", "slow"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "bhbench", *argv], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if sum("FIT STARTED" in seen for seen in lines) == 2:  # trial 0 finished, trial 1 fitting
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert rest.strip().splitlines() == [
        f"interrupted: trials finished (of 5 per fold) fold 1: 1; study slow keeps them; to resume, rerun: bhbench "
        f"{' '.join(argv)}"
    ], rest
    # The interrupted trial does not count: a rerun runs 4 more.
    study = optuna.load_study(study_name="slow-fold1", storage=tuning.open_storage(storage))
    assert sum(map(tuning.finished, study.trials)) == 1


def test_run_with_params_uses_each_folds_tuned_parameters_and_says_so(
    run_toy, tiny_tree: Path, tmp_path: Path, tunable
):
    plan = _plan(tiny_tree, tmp_path, tunable)
    options = runner.Options(results=tmp_path / "plan", submissions=tunable)
    doc = tuning.Tuner(plan, "toy_spy", {}, "c0de", f"sqlite:///{tmp_path / 's.db'}", "s", options).tune(1)
    # Distinct per-fold parameters, so the test can tell which fold ran with which.
    for fold, size in zip(doc["folds"].values(), (5, 7, 9, 11, 13), strict=True):
        fold["params"]["size"] = size
    params = tmp_path / "tuned.json"
    tuning.write_params(params, doc)
    said: list = []
    result = run_toy("toy_spy", tuned=[params], progress=said.append)
    records = result.records
    # tuned on code "c0de", run on the file's code: the values were chosen for other code, and it says so
    assert any("was tuned on other code of toy_spy (c0de, now" in getattr(e, "text", "") for e in said)
    assert [r.method.params["size"] for r in records] == [5, 7, 9, 11, 13]
    assert [row.label for row in result.rows] == ["toy_spy [tuned]"]
    assert len({r.method.params_hash for r in records}) == 1  # one leaderboard row
    for r in records:
        tuned = r.method.tuned
        assert tuned["by"] == "optuna" and tuned["study"] == f"s-fold{r.split.fold}" and tuned["trials"] == 1
        assert "inner validation" in tuned["objective"] and np.isfinite(tuned["inner_patient_rr"])
    assert api.leaderboard(tmp_path / "results", tmp_path).ok
    assert "toy_spy † (tuned)" in (tmp_path / "README.md").read_text()  # tuned, never audited
    # Parameters tuned on one protocol do not run under another.
    with pytest.raises(UserError, match="was tuned for"):
        run_toy("toy_spy", tuned=[params], task="subtype")


def test_a_hand_crafted_baseline_tunes_and_its_file_lands_beside_the_records(
    tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.chdir(tmp_path)  # nothing may appear in the working directory
    monkeypatch.setenv("BHBENCH_RESULTS", str(tmp_path / "results"))
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    argv = ["tune", "--method", "pftas_svm", "--trials", "1", "--fold", "1",
            "--data", str(tiny_tree), "--storage", storage]  # fmt: skip
    assert main(argv) == 0
    written = list((tmp_path / "results" / "tuned").glob("*.json"))
    assert len(written) == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["results", "study.sqlite3"]
    best = json.loads(written[0].read_text())["folds"]["1"]
    assert set(best["searched"]) == {"C", "gamma"} and best["params"]["C"] == best["searched"]["C"]
    assert "pftas_svm: best per fold" in capsys.readouterr().out


def test_1nn_has_nothing_to_tune(capsys):
    assert main(["tune", "--method", "pftas_1nn", "--trials", "1"]) == 2
    assert "pftas_1nn declares no search space" in capsys.readouterr().err


@pytest.mark.parametrize("family", ["handcrafted", "deep", "probe"])
def test_built_in_families_declare_search_spaces_whose_draws_are_valid(family: str):
    from bhbench import params

    entries = [e for e in registry.entries() if e.family == family]
    assert entries
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for entry in entries:
        if entry.name.endswith("_1nn"):
            with pytest.raises(UserError, match="declares no search space"):  # nothing to tune
                tuning.search_space(entry.name)
            continue
        for _ in range(3):
            drawn = tuning.search_space(entry.name)(study.ask())
            assert drawn and params.validate(entry.name, drawn) == drawn, entry.name
