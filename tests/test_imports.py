"""The house: imports flow one way and no two modules import each other.

`make test` runs `lint-imports` on the contracts in pyproject.toml. These tests show that the
checks bite: each plants a defect (a cycle, a CLI family importing another, a figure importing
an analysis) and sees it refused, and they check what the contracts cannot state: no cycle
among all the modules at once, and every CLI family registered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("interp", "saes", "apps", "benchmarks")


def _graph() -> grimp.ImportGraph:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # apps/ and benchmarks/ are found from the checkout
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every set of project modules that import each other, directly or around a loop (the
    strongly connected components of more than one module; Tarjan's algorithm, iterative)."""
    modules = sorted(graph.modules)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in graph.modules:
                    continue
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))
    return cycles


def test_no_module_imports_itself_back():
    graph = _graph()
    assert module_cycles(graph) == []
    # The check finds a cycle when one is added: covariance asking rome again, as it once did.
    graph.add_import(importer="interp.knowledge.covariance", imported="interp.knowledge.rome")
    assert module_cycles(graph) == [["interp.knowledge.covariance", "interp.knowledge.rome"]]


def _cli_cross_imports(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    families = [m for m in graph.find_children("interp.cli") if not m.rsplit(".", 1)[1].startswith("_")]
    # a family may import the common module and its own private parts (interp.cli._sae_summary for sae)
    return sorted((f, i) for f in families for i in graph.find_modules_directly_imported_by(f)
                  if i.startswith("interp.cli") and i != "interp.cli._common"
                  and not i.startswith(f"interp.cli._{f.rsplit('.', 1)[1]}_"))


def test_cli_families_import_only_the_common_module():
    graph = _graph()
    assert _cli_cross_imports(graph) == []
    graph.add_import(importer="interp.cli.circuits", imported="interp.cli.relation")
    graph.add_import(importer="interp.cli.circuits", imported="interp.cli._sae_summary")  # another family's part
    assert _cli_cross_imports(graph) == [("interp.cli.circuits", "interp.cli._sae_summary"),
                                         ("interp.cli.circuits", "interp.cli.relation")]


def test_every_cli_module_is_a_registered_family():
    """A new family is one module plus its name in FAMILIES; a module left out would have no verbs."""
    from interp.cli import FAMILIES

    modules = sorted(p.stem for p in (ROOT / "interp" / "cli").glob("*.py") if not p.stem.startswith("_"))
    assert sorted(FAMILIES) == modules
    import importlib

    verbs = [v for name in FAMILIES for v in importlib.import_module(f"interp.cli.{name}").COMMANDS]
    assert len(verbs) == len(set(verbs))  # each verb belongs to one family


LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev extra")
@pytest.mark.parametrize("path, line, broken", [
    ("interp/knowledge/covariance.py", "from interp.knowledge import rome", "No import cycle"),
    ("interp/figures/circuits.py", "from interp.circuits.lens import LogitLens", "Entry points over analyses"),
    ("interp/cli/_common.py", "from interp.cli import sae", "No import cycle"),
    ("saes/base.py", "from saes.features import store", "Feature jobs over training"),
    ("saes/store_probe.py", "import streamlit", "Nothing in the library imports the explorer"),
])
def test_lint_imports_refuses_a_planted_defect(tmp_path, path, line, broken):
    """The contracts in pyproject.toml break when the defect each one guards against comes back."""
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(src, tmp_path / name)

    def lint():
        return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                              env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})

    assert lint().returncode == 0
    target = tmp_path / path
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}  # planted\n")
    result = lint()
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
