"""Registration, lookup and discovery of built-ins, submissions and entry points."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import Method, register
from bhbench.errors import UserError
from bhbench.registry import MethodCard, Registry


def test_builtin_baselines_are_discovered(clean_registry):
    clean_registry.discover(Path("/nonexistent"))
    assert "lbp_svm" in {e.name for e in clean_registry.entries()}


def test_duplicate_name_names_both_origins(clean_registry):
    @register("dup_test", family="test")
    class First(Method):
        pass

    with pytest.raises(UserError) as err:

        @register("dup_test", family="test")
        class Second(Method):
            pass

    assert str(err.value).count("test_registry.py") == 2 and "registered twice" in str(err.value)


def test_unknown_name_suggests_close_ones(clean_registry):
    clean_registry.discover(Path("/nonexistent"))
    with pytest.raises(UserError, match="did you mean .*lbp_svm"):
        clean_registry.get("lbp_svn")


def test_resolve_wildcards_and_families(clean_registry, submissions):
    (submissions / "toy_a.py").write_text(toy_source("toy_a"))
    (submissions / "toy_b.py").write_text(toy_source("toy_b"))
    clean_registry.discover(submissions)
    assert clean_registry.resolve(["toy_*"]) == ["toy_a", "toy_b"]
    assert set(clean_registry.resolve(["test"])) >= {"toy_a", "toy_b"}
    assert clean_registry.resolve(["toy_b", "toy_*"]) == ["toy_b", "toy_a"]
    with pytest.raises(UserError, match="no method matches"):
        clean_registry.resolve(["nothing_*"])


def test_broken_submission_is_reported_and_others_load(clean_registry, submissions):
    (submissions / "good.py").write_text(toy_source("good_toy"))
    (submissions / "broken.py").write_text("import numpy\nraise RuntimeError('half-written method')\n")
    folder = submissions / "packaged"
    folder.mkdir()
    (folder / "method.py").write_text(toy_source("packaged_toy"))
    clean_registry.discover(submissions)  # the harness: cards read, no file run
    names = {e.name for e in clean_registry.entries()}
    assert {"good_toy", "packaged_toy"} <= names
    assert not clean_registry.discovery_errors()
    clean_registry.discover(submissions, run_code=True)  # a worker: files imported, a broken one reported
    errors = clean_registry.discovery_errors()
    assert any("broken.py" in e.source and "half-written method" in e.message for e in errors)
    assert clean_registry.get("good_toy").trusted  # the worker holds the class itself, not the stand-in


def test_submission_reusing_a_builtin_name_is_refused_with_both_origins(clean_registry, submissions):
    clean_registry.discover(Path("/nonexistent"))
    (submissions / "clash.py").write_text(toy_source("lbp_svm"))
    clean_registry.discover(submissions)
    message = next(e.message for e in clean_registry.discovery_errors() if "clash.py" in e.source)
    assert "registered twice" in message and "clash.py" in message and "handcrafted" in message


class Scaled(Method):
    """A method with two parameters, registered below under several names."""

    def __init__(self, width: int = 8, depth: int = 1, seed: int = 0):
        self.width = width
        self.depth = depth
        self.seed = seed


def test_one_class_under_many_names_with_their_own_defaults():
    reg = Registry()
    reg.register("scaled", Scaled, card=MethodCard(family="test", reference="r"))
    reg.register("scaled_wide", Scaled, width=32, card=MethodCard(family="test", reference="r", facts={"dim": 32}))
    wide = reg.create("scaled_wide")
    assert type(wide) is Scaled and wide.get_params() == {"width": 32, "depth": 1, "seed": 0}
    assert reg.create("scaled_wide", depth=3).get_params() == {"width": 32, "depth": 3, "seed": 0}
    assert wide.clone().get_params() == wide.get_params()  # a variant's record keeps every effective value
    assert reg.get("scaled_wide").param_defaults() == {"width": 32, "depth": 1, "seed": 0}
    assert reg.get("scaled").param_defaults() == {"width": 8, "depth": 1, "seed": 0}
    assert reg.get("scaled_wide").details == {"dim": 32}
    assert reg.get("scaled").summary == "A method with two parameters, registered below under several names."
    assert [e.name for e in reg.list_methods("scaled_*")] == ["scaled_wide"]
    assert [e.name for e in reg.list_methods("test")] == ["scaled", "scaled_wide"]


def test_registry_objects_are_independent():
    first, second = Registry(), Registry()
    first.register("only_here", Scaled, card=MethodCard(family="test"))
    assert [e.name for e in first.entries()] == ["only_here"] and second.entries() == []
    with pytest.raises(UserError, match="unknown method 'only_here'"):
        second.get("only_here")


def test_defaults_must_be_parameters_and_unknown_params_are_user_errors():
    reg = Registry()
    with pytest.raises(TypeError, match="no parameter colour"):
        reg.register("bad_default", Scaled, colour="red")
    reg.register("scaled", Scaled)
    with pytest.raises(UserError, match="scaled has no parameter widht; did you mean width"):
        reg.create("scaled", widht=3)
    with pytest.raises(UserError, match="scaled has no parameter colour; its parameters are width, depth, seed"):
        reg.create("scaled", colour="red")


def test_duplicate_name_by_direct_call_names_both_origins():
    reg = Registry()
    reg.register("taken", Scaled)

    class Other(Method):
        pass

    with pytest.raises(UserError, match="registered twice") as err:
        reg.register("taken", Other)
    assert str(err.value).count("test_registry.py") == 2


def test_decorator_takes_card_keywords_or_a_card(clean_registry):
    @register("card_kw", family="test", reference="ref", authors="A. B.", licence="MIT", dim=3)
    class ByKeywords(Method):
        """Summary line."""

    @register("card_obj", card=MethodCard(family="test", summary="Given summary.", licence="MIT"))
    class ByCard(Method):
        pass

    kw, obj = clean_registry.get("card_kw"), clean_registry.get("card_obj")
    assert (kw.family, kw.reference, kw.card.authors, kw.card.licence) == ("test", "ref", "A. B.", "MIT")
    assert kw.details == {"authors": "A. B.", "licence": "MIT", "dim": 3} and kw.summary == "Summary line."
    assert obj.summary == "Given summary." and obj.details == {"licence": "MIT"}
    assert clean_registry.create("card_kw").__class__ is ByKeywords
    with pytest.raises(TypeError, match="not both"):
        register("both", card=MethodCard(), family="test")


HEAVY = ("scipy", "skimage", "sklearn", "torch")
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["list"], ["--help"], ["list", "--help"]])
def test_listing_and_help_import_no_heavy_library(argv):
    """`bhbench list` imports every built-in and reads the repository's submissions' cards (never
    importing them): none of that may pull in SciPy, scikit-image, scikit-learn or torch."""
    code = (
        "import sys\nfrom bhbench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))\n"
        "print('SUBMISSIONS', [m for m in sys.modules if m.startswith('bhbench_submissions')])"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-300:]
    if argv == ["list"]:
        assert "lbp_svm" in out.stdout and "hed_nuclei_rf" in out.stdout  # its card, read from source
    assert "SUBMISSIONS []" in out.stdout


def test_handcrafted_defaults_are_the_ones_the_committed_records_were_run_with():
    """Registration may change shape, not parameters: every hand-crafted name's default parameters
    hash to the folder its committed records are filed under."""
    from bhbench import record, registry

    registry.discover(Path("/nonexistent"))
    committed: dict[str, set[str]] = {}
    for folder in (REPO / "leaderboard" / "results").glob("*/*/*/*"):
        if folder.is_dir():
            committed.setdefault(folder.parent.name, set()).add(folder.name)
    handcrafted = [e.name for e in registry.entries() if e.family == "handcrafted"]
    assert len(handcrafted) == 24 and set(handcrafted) <= set(committed)
    for name in handcrafted:
        assert record.params_hash(registry.create(name).get_params()) in committed[name], name


def test_a_handcrafted_variant_is_one_register_line():
    from bhbench_baselines.handcrafted.methods import LbpSVM

    reg = Registry()
    reg.register("lbp16_svm", LbpSVM, P=16, R=2, card=MethodCard(family="handcrafted"))
    method = reg.create("lbp16_svm")
    assert type(method) is LbpSVM and method.spec().dim == 18
    assert method.get_params() == {"P": 16, "R": 2, "C": None, "gamma": None, "seed": 0, "cv_folds": 3}
    assert method.clone().get_params() == method.get_params()


# --- cards read from source, never run (the trust boundary) -------------------------------------------

CARDS = """
import os
from bhbench import Method, MethodCard, register
from bhbench_baselines.reference import Majority

open(os.environ["CARD_MARKER"], "w").write("ran")  # must never run in the harness
N = 2 * len((1, 2, 3)) + 1


class Base(Method):
    \"\"\"A base defined in the file.\"\"\"

    tasks = ("binary",)

    def __init__(self, width: int = 8, rate: "float | None" = None, mode: str = "a"):
        self.width, self.rate, self.mode = width, rate, mode

    @classmethod
    def search_space(cls, trial):
        return {}


@register("card_deco", family="submission", reference="ref", authors="A", licence="MIT",
          weights_data="ImageNet-1k", dim=N)
class Deco(Base):
    transductive = True


register("card_call", Base, card=MethodCard(family="submission", reference="r2", summary="Given."), width=32)


@register("card_inherits", family="submission")
class FromBaseline(Majority):
    pass
"""


def test_cards_are_read_from_source_without_running_it(clean_registry, submissions, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("CARD_MARKER", str(marker))
    (submissions / "cards.py").write_text(CARDS)
    clean_registry.discover(submissions)
    assert not clean_registry.discovery_errors() and not marker.exists()
    deco, call = clean_registry.get("card_deco"), clean_registry.get("card_call")
    assert not deco.trusted and deco.line == 23 and deco.origin == str((submissions / "cards.py").resolve())
    assert (deco.family, deco.reference, deco.tasks, deco.transductive) == ("submission", "ref", ("binary",), True)
    assert deco.details == {"authors": "A", "licence": "MIT", "weights": "ImageNet-1k", "dim": 7}
    assert deco.card.weights_data == "ImageNet-1k" and deco.summary == "A base defined in the file."
    assert deco.param_defaults() == {"width": 8, "rate": None, "mode": "a"}
    assert {k: d.text() for k, d in deco.declarations().items()} == {
        "width": "an integer",
        "rate": "a number or null",
        "mode": "a string",
    }
    assert deco.declares("search_space") and not deco.declares("check_params")
    assert call.param_defaults()["width"] == 32 and call.summary == "Given." and call.transductive is False
    assert clean_registry.create("card_call", mode="b").get_params() == {"width": 32, "rate": None, "mode": "b"}
    inherited = clean_registry.get("card_inherits")  # a base from bhbench's own baselines is read as it is
    assert inherited.param_names() == clean_registry.get("majority").param_names()
    with pytest.raises(RuntimeError, match="runs only in a worker"):
        clean_registry.create("card_deco").fit(None)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "line", "says"),
    [
        ("X = f()\n@register('n', family=X)\nclass C(Method):\n    pass\n", 2, "value family= is not a literal"),
        (
            "@register('n')\nclass C(Method):\n    def __init__(self, k=float('inf')):\n        self.k = k\n",
            3,
            "default of parameter k is not a literal",
        ),
        ("class C(Method):\n    pass\nfor n in ('a', 'b'):\n    register(n, C)\n", 4, "must be a decorator"),
        ("from elsewhere import Base\n@register('n')\nclass C(Base):\n    pass\n", 3, "neither defined in this file"),
        ("@register('n')\nclass C(Method):\n    tasks = tuple(['binary'])\n", 3, "C.tasks is not a literal"),
        (
            "LOW = 1\n@register('n')\nclass C(Method):\n    def __init__(self, k: Annotated[int, Interval(LOW)] = 1):\n"
            "        self.k = k\n",
            4,
            "parameter k: an argument of Interval is not a literal (LOW)",
        ),
        (
            "@register('n')\nclass C(Method):\n    def __init__(self, k: Annotated[int, Intervall(1)] = 1):\n"
            "        self.k = k\n",
            3,
            "Intervall is not a constraint bhbench knows (Interval)",
        ),
        (
            "@register('n')\nclass C(Method):\n    def __init__(self, k: Annotated[str, Interval(1)] = 'a'):\n"
            "        self.k = k\n",
            3,
            "Interval bounds numbers; str is not int or float",
        ),
        (
            "class C(Method):\n    def __init__(self, k: Annotated[int, Interval(1)] = 1):\n        self.k = k\n"
            "register('n', C, k=0)\n",
            4,
            "register('n'): k=0 is not allowed: expected an integer >= 1",
        ),
    ],
)
def test_a_card_that_is_not_data_is_one_line_naming_file_and_line(clean_registry, submissions, source, line, says):
    file = submissions / "bad.py"
    file.write_text("from typing import Annotated\nfrom bhbench import Interval, Method, register\n" + source)
    clean_registry.discover(submissions)
    (error,) = clean_registry.discovery_errors()
    assert error.message.startswith(f"{file.resolve()}:{line + 2}: ") and says in error.message
    assert "\n" not in error.message
    with pytest.raises(UserError, match=f"bad.py:{line + 2}: "):
        clean_registry.load_submission(file)


def test_a_non_literal_card_is_one_line_from_the_cli(submissions, tmp_path, capsys):
    (tmp_path / "bad.py").write_text(
        "from bhbench import Method, register\nimport random\n"
        "@register('n', family=random.choice('ab'))\nclass C(Method):\n    pass\n"
    )
    from bhbench.cli import main

    assert main(["--submissions", str(submissions), "check", str(tmp_path / "bad.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.py:3:" in err and "not a literal" in err and "Traceback" not in err


def test_other_entry_point_packages_are_untrusted(clean_registry, tmp_path, monkeypatch):
    """Only bhbench's own baselines are imported by the harness; another installed plugin's cards are read."""
    import importlib.metadata

    package = tmp_path / "site" / "third_party_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import methods\n")
    (package / "methods.py").write_text(CARDS.replace("card_", "plugin_"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    marker = tmp_path / "marker"
    monkeypatch.setenv("CARD_MARKER", str(marker))
    theirs = importlib.metadata.EntryPoint("plugin", "third_party_plugin", "bhbench.methods")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [*real(group=group), theirs])
    clean_registry.discover(Path("/nonexistent"))
    assert not clean_registry.discovery_errors() and not marker.exists()
    assert "third_party_plugin" not in sys.modules
    entry = clean_registry.get("plugin_deco")
    assert not entry.trusted and entry.origin.endswith("methods.py") and clean_registry.get("lbp_svm").trusted
    clean_registry.discover(Path("/nonexistent"), run_code=True)  # what a worker does
    assert marker.exists() and clean_registry.get("plugin_deco").trusted
    sys.modules.pop("third_party_plugin", None)
    sys.modules.pop("third_party_plugin.methods", None)


def test_set_values_are_checked_against_annotations_read_as_text(clean_registry, submissions, tmp_path, monkeypatch):
    from bhbench import params

    monkeypatch.setenv("CARD_MARKER", str(tmp_path / "marker"))
    (submissions / "cards.py").write_text(CARDS)
    clean_registry.discover(submissions)
    assert params.validate("card_deco", {"width": 3, "rate": 1}) == {"width": 3, "rate": 1.0}
    assert params.validate("card_deco", {"rate": None}) == {"rate": None}
    with pytest.raises(UserError, match=r"card_deco: width='x' is not allowed: expected an integer"):
        params.validate("card_deco", {"width": "x"})
    with pytest.raises(UserError, match="expected a number or null"):
        params.validate("card_deco", {"rate": "fast"})
    with pytest.raises(UserError, match="has no parameter 'depth'"):
        params.validate("card_deco", {"depth": 1})
    assert params.describe("card_call", {"width": 32, "rate": None, "mode": "b"}) == "mode=b"
    assert not (tmp_path / "marker").exists()


# --- parameters: declared once in the signature, checked once before any job --------------------------

DECLARED = """
import os
from typing import Annotated, Literal
from bhbench import Interval, Method, register

open(os.environ["CARD_MARKER"], "w").write("ran")  # must never run in the harness
raise SystemExit("this file cannot even be imported")
Rate = Annotated[float, Interval(0, 1, closed="right")]


@register("declared", family="submission", reference="r", authors="A", licence="MIT")
class Declared(Method):
    def __init__(
        self,
        n: Annotated[int, Interval(1, 10)] = 2,
        rate: Rate | None = None,
        odd: Annotated[int, Interval(1, None, step=2)] = 3,
        kind: Literal["a", "b"] = "a",
        flag: bool = False,
        device: str = "auto",
    ):
        self.n, self.rate, self.odd, self.kind, self.flag, self.device = n, rate, odd, kind, flag, device
"""


@pytest.fixture
def declared(clean_registry, submissions, tmp_path, monkeypatch) -> Path:
    """An untrusted submission declaring one parameter of each kind; importing it writes the marker."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("CARD_MARKER", str(marker))
    (submissions / "declared.py").write_text(DECLARED)
    clean_registry.discover(submissions)
    assert not clean_registry.discovery_errors()
    return marker


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"n": 0}, "n=0 is not allowed: expected an integer >= 1 and <= 10"),
        ({"n": 11}, "n=11 is not allowed: expected an integer >= 1 and <= 10"),
        ({"n": 2.5}, "n=2.5 is not allowed: expected an integer >= 1 and <= 10"),
        ({"n": True}, "n=True is not allowed: expected an integer >= 1 and <= 10"),
        ({"n": None}, "n=None is not allowed: expected an integer >= 1 and <= 10"),
        ({"rate": 0}, "rate=0 is not allowed: expected a number > 0 and <= 1 or null"),
        ({"rate": "x"}, "rate='x' is not allowed: expected a number > 0 and <= 1 or null"),
        ({"odd": 4}, "odd=4 is not allowed: expected an integer >= 1 in steps of 2"),
        ({"kind": "c"}, "kind='c' is not allowed: expected 'a' or 'b'"),
        ({"flag": 1}, "flag=1 is not allowed: expected true or false"),
    ],
)
def test_an_untrusted_methods_declarations_are_checked_in_the_harness_without_importing_it(declared, values, says):
    from bhbench import params

    with pytest.raises(UserError) as caught:
        params.resolve(["declared"], values)
    assert str(caught.value) == f"declared: {says}"
    assert not declared.exists()


def test_resolve_gives_each_method_the_values_it_accepts_checked(declared):
    from bhbench import params

    chosen = params.resolve(["declared", "lbp_svm"], {"n": 10, "rate": 1, "odd": 5, "kind": "b", "C": 3}, "cpu")
    assert chosen == {"declared": {"n": 10, "rate": 1.0, "odd": 5, "kind": "b", "device": "cpu"}, "lbp_svm": {"C": 3}}
    assert isinstance(chosen["declared"]["rate"], float) and isinstance(chosen["lbp_svm"]["C"], float)
    assert params.resolve(["lbp_svm"], {}, device="cpu") == {"lbp_svm": {}}  # --device: where there is one
    with pytest.raises(UserError, match=r"^no selected method has parameter\(s\) colour, widht$"):
        params.resolve(["declared", "lbp_svm"], {"C": 1, "widht": 2, "colour": "red"})
    assert params.defaults("declared") == {"n": 2, "rate": None, "odd": 3, "kind": "a", "flag": False, "device": "auto"}
    assert not declared.exists()


def _builtins() -> list[str]:
    from bhbench import registry

    registry.discover(Path("/nonexistent"))
    return [e.name for e in registry.entries() if e.trusted]


@pytest.mark.parametrize("name", _builtins())
def test_a_builtins_defaults_are_its_declarations_and_within_them(name):
    from bhbench import params, registry

    defaults = params.defaults(name)
    assert defaults == registry.create(name).get_params()
    assert params.resolve([name], defaults) == {name: defaults}


@pytest.mark.parametrize("name", _builtins())
def test_every_builtin_refuses_to_predict_before_fit(name):
    import numpy as np

    from bhbench import NotFittedError, TestSet, registry

    test = TestSet.build("binary", images=[np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(NotFittedError, match=r"is not fitted: call fit before predicting$"):
        registry.create(name).predict_proba(test)


# --- bhbench list NAME: one method's parameters and search space ------------------------------------


def test_list_name_shows_a_builtins_defaults_constraints_and_search_space(capsys):
    from bhbench.cli import main

    assert main(["list", "lbp_svm"]) == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}  # fmt: skip
    # type, default, allowed values, what `tune` explores: P is fixed, C is searched
    assert rows["P"] == ["int", "8", ">= 1 and <= 254", "-"]
    assert rows["C"] == ["float | None", "None", "> 0", "numbers in [0.1, 1000], log scale"]
    assert main(["list", "pftas_rf"]) == 0
    rf = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert "str | float" in rf["max_features"] and "one of 'sqrt', 'log2'; > 0 and <= 1" in rf["max_features"]
    assert main(["list", "pftas_1nn"]) == 0
    assert "pftas_1nn declares no search space" in capsys.readouterr().out


def test_list_name_shows_a_submissions_parameters_and_draws_its_space_outside_the_harness(monkeypatch):
    from bhbench import api

    for name in [m for m in sys.modules if "hed_nuclei" in m]:  # an earlier test of this session ran it
        monkeypatch.delitem(sys.modules, name)
    info = api.method("hed_nuclei_rf", REPO / "submissions")
    assert info.entry.family == "submission" and info.entry.reference.startswith("Ruifrok")
    by_name = {p.name: p for p in info.parameters}
    assert (by_name["max_features"].default, by_name["max_features"].constraint) == (0.3, "> 0 and <= 1")
    assert by_name["max_features"].search == "numbers in [0.05, 1], log scale"
    assert by_name["height"].search is None and by_name["height"].constraint == ">= 16"
    # Its search space ran in a helper process: the submission's module is never imported here.
    assert not [m for m in sys.modules if "hed_nuclei" in m]


def test_list_of_an_unknown_name_is_one_line_with_a_suggestion(capsys):
    from bhbench.cli import main

    assert main(["list", "lbp_sv"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown method 'lbp_sv'; did you mean lbp_svm" in err
    assert main(["list", "nosuch_*"]) == 2
    assert "no method matches 'nosuch_*'" in capsys.readouterr().err
