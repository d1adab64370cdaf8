"""Where tuning studies live: by default a journal file that this machine's processes share, a
PostgreSQL database for several machines (.ci/postgres starts one), and one clear line for a
--storage that is neither."""

import contextlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from conftest import toy_source

from bhbench import runner, tuning
from bhbench.cli import main
from bhbench.data.sources import open_dataset
from bhbench.errors import UserError
from bhbench.protocol import Protocol

POSTGRES = Path(__file__).resolve().parents[1] / ".ci" / "postgres"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of the PostgreSQL server .ci/postgres starts (skipped, with its reason, where it cannot);
    stopped afterwards only when this session started it."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install 'bhbench[postgres]'")
    ran_before = subprocess.run([POSTGRES, "status"], capture_output=True).returncode == 0
    start = subprocess.run([POSTGRES, "start"], capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.skip(start.stderr.strip().splitlines()[-1])
    yield start.stdout.strip()
    if not ran_before:
        subprocess.run([POSTGRES, "stop"], check=True, capture_output=True, timeout=120)


def test_the_default_storage_is_a_journal_file_in_the_cache():
    default = tuning.default_storage()
    assert default.endswith("/tuning/optuna.log") and tuning.public_url(default) == default
    assert isinstance(tuning.open_storage(default), optuna.storages.JournalStorage)


def test_a_database_url_opens_as_one_and_its_password_stays_out_of_files(tmp_path: Path):
    assert isinstance(tuning.open_storage(f"sqlite:///{tmp_path / 's.db'}"), optuna.storages.RDBStorage)
    hidden = tuning.public_url("postgresql+psycopg://bhbench:s3cret@db.example:5432/bhbench")
    assert hidden == "postgresql+psycopg://bhbench:***@db.example:5432/bhbench"


@pytest.mark.parametrize(
    ("storage", "says"),
    [
        ("studies.db", r"--storage studies.db: not a journal file \(a path ending in .log\) or a database URL"),
        ("postgres://u:pw@host/db", r"--storage postgres://u:\*\*\*@host/db: not a journal file .*postgres"),
        ("{tmp}/missing/optuna.log", r"--storage .*/missing/optuna.log: cannot write the journal file there"),
        (
            "postgresql+psycopg://u:pw@localhost:1/db",
            r"--storage postgresql\+psycopg://u:\*\*\*@localhost:1/db: cannot ",
        ),
    ],
)
def test_an_unusable_storage_is_one_line_naming_it_without_its_password(
    storage: str, says: str, tmp_path: Path, capsys
):
    storage = storage.format(tmp=tmp_path)
    with pytest.raises(UserError, match=says):
        tuning.open_storage(storage)
    assert main(["tune", "--method", "pftas_svm", "--trials", "1", "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(says, err) and "pw" not in err, err


# Each fit marks its worker process in a folder and waits (a minute at most) until two workers have,
# so two processes sharing a study are sure to run trials at the same time.
MEET = """import os, pathlib, time; meet = pathlib.Path({meet!r}); (meet / str(os.getpid())).touch()
        end = time.time() + 60
        while len(list(meet.iterdir())) < 2 and time.time() < end: time.sleep(0.05)"""
SPACE = """
    @classmethod
    def search_space(cls, trial):
        return {"size": trial.suggest_categorical("size", [8, 12, 16])}
"""


def _two_processes_tune_one_study(storage: str, tree: Path, submissions: Path, tmp_path: Path) -> None:
    """Two `bhbench tune` processes on one fold's study in `storage`, fitting at the same time: every
    trial lands in the study once, each process ran some, and together they stop at --trials."""
    meet = tmp_path / "meet"
    meet.mkdir()
    (submissions / "toy.py").write_text(toy_source("toy_meet", fit_body=MEET.format(meet=str(meet))) + SPACE)
    study = f"shared-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "bhbench", "--submissions", str(submissions), "tune", "--method", "toy_meet",
               "--trials", "4", "--fold", "1", "--storage", storage, "--study", study, "--data", str(tree),
               "--sandbox", "off"]  # fmt: skip
    try:
        procs = [
            subprocess.Popen([*command, "--out", str(tmp_path / f"p{i}.json")], stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        errors = [p.communicate(timeout=600)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], "\n".join(errors)
        ran = [{int(n) for n in re.findall(r"fold 1 trial (\d+): inner PRR", err)} for err in errors]
        assert all(ran), "\n".join(errors)  # both processes ran trials
        assert not ran[0] & ran[1]  # none twice
        trials = optuna.load_study(study_name=f"{study}-fold1", storage=tuning.open_storage(storage)).trials
        done = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert sorted(ran[0] | ran[1]) == done and len(done) == 4
        # The others are surplus: asked for while the last trials ran, and pruned unscored.
        assert all(t.state == optuna.trial.TrialState.PRUNED for t in trials if t.number not in done)
        # The process that finished last saw every trial: its file holds the study's best.
        last = max((tmp_path / "p0.json", tmp_path / "p1.json"), key=lambda p: p.stat().st_mtime_ns)
        best = json.loads(last.read_text())["folds"]["1"]
        assert best["trials"] == 4 and best["inner_patient_rr"] == max(t.value for t in trials if t.number in done)
    finally:  # a PostgreSQL database outlives the test
        with contextlib.suppress(KeyError):
            optuna.delete_study(study_name=f"{study}-fold1", storage=tuning.open_storage(storage))


def test_two_processes_tune_one_study_in_the_journal_file_at_once(tiny_tree: Path, submissions: Path, tmp_path: Path):
    _two_processes_tune_one_study(str(tmp_path / "optuna.log"), tiny_tree, submissions, tmp_path)


def test_two_processes_tune_one_study_in_postgresql_at_once(
    postgres_url: str, tiny_tree: Path, submissions: Path, tmp_path: Path
):
    _two_processes_tune_one_study(postgres_url, tiny_tree, submissions, tmp_path)


def test_a_study_another_process_is_still_labelling_is_joined_and_one_of_other_code_refused(
    tiny_tree: Path, tmp_path: Path
):
    options = runner.Options(results=tmp_path / "plan")
    plan = runner.make_plan(open_dataset(tiny_tree), Protocol(), None, options)
    fold = plan.split.folds[0]
    storage = str(tmp_path / "optuna.log")
    made = optuna.create_study(study_name="s-fold1", storage=tuning.open_storage(storage))
    made.set_user_attr("method", "toy")  # the process that made it has labelled it this far
    tuner = tuning.Tuner(plan, "toy", {}, "c0de", storage, "s", options)
    joined = tuner._study(tuning.open_storage(storage), fold)
    assert joined.user_attrs == tuner._identity(fold)
    other = tuning.Tuner(plan, "toy", {}, "f00d", storage, "s", options)
    with pytest.raises(
        UserError, match=r"study s-fold1 in .*optuna.log was tuned on other code of toy \(code c0de, now f00d\)"
    ):
        other._study(tuning.open_storage(storage), fold)


def test_processes_opening_a_new_postgresql_database_at_once_all_succeed(postgres_url: str):
    import sqlalchemy

    schema = f"fresh_{uuid.uuid4().hex[:8]}"  # optuna's tables not made yet, as in a new database
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    url = f"{postgres_url}?options=-csearch_path%3D{schema}"
    opening = "import sys; from bhbench import tuning; tuning.open_storage(sys.argv[1])"
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", opening, url], stderr=subprocess.PIPE, text=True) for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    finally:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()
