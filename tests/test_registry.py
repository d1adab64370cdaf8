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
    clean_registry.discover(submissions)
    names = {e.name for e in clean_registry.entries()}
    assert {"good_toy", "packaged_toy"} <= names
    errors = clean_registry.discovery_errors()
    assert any("broken.py" in e.source and "half-written method" in e.message for e in errors)


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
    """`bhbench list` imports every built-in and the repository's submissions to read their cards:
    none of them may pull in SciPy, scikit-image, scikit-learn or torch to do so."""
    code = (
        "import sys\nfrom bhbench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-300:]
    if argv == ["list"]:
        assert "lbp_svm" in out.stdout and "hed_nuclei_rf" in out.stdout  # the submission was imported too


def test_handcrafted_defaults_are_the_ones_the_committed_records_were_run_with():
    """Registration may change shape, not parameters: every hand-crafted name's default parameters
    hash to the folder its committed records are filed under."""
    from bhbench import registry, results

    registry.discover(Path("/nonexistent"))
    committed: dict[str, set[str]] = {}
    for folder in (REPO / "leaderboard" / "results").glob("*/*/*/*"):
        if folder.is_dir():
            committed.setdefault(folder.parent.name, set()).add(folder.name)
    handcrafted = [e.name for e in registry.entries() if e.family == "handcrafted"]
    assert len(handcrafted) == 24 and set(handcrafted) <= set(committed)
    for name in handcrafted:
        assert results.params_hash(registry.create(name).get_params()) in committed[name], name


def test_a_handcrafted_variant_is_one_register_line():
    from bhbench_baselines.handcrafted.methods import LbpSVM

    reg = Registry()
    reg.register("lbp16_svm", LbpSVM, P=16, R=2, card=MethodCard(family="handcrafted"))
    method = reg.create("lbp16_svm")
    assert type(method) is LbpSVM and method.spec().dim == 18
    assert method.get_params() == {"P": 16, "R": 2, "C": None, "gamma": None, "seed": 0, "cv_folds": 3}
    assert method.clone().get_params() == method.get_params()
