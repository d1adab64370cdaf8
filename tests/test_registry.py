"""Registration, lookup and discovery of built-ins, submissions and entry points."""

from pathlib import Path

import pytest
from conftest import toy_source

from bhbench import Method, register
from bhbench.errors import UserError


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
