"""The layering rules a newcomer relies on, checked on the source: no module reaches into another
module's private names, the report imports no metric code, loading data does not load the
methods, and the EDA modules import one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("harness", "baselines", "generative", "reports", "tools", "examples")  # tests/ may reach in


def _sources(*folders: str) -> dict[Path, ast.Module]:
    files = sorted(p for folder in folders for p in (REPO / folder).rglob("*.py") if ".venv" not in p.parts)
    return {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in files}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private(tree: ast.Module) -> set[str]:
    """Private names a module defines itself (functions, classes, variables, its objects' attributes)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return {name for name in out if _private(name)}


def private_name_offenders(trees: dict[Path, ast.Module]) -> list[str]:
    """``from X import _name``, and ``something._name`` (or getattr/setattr of ``"_name"``) where
    ``_name`` is a private name of another project module, not of this one."""
    own = {path: _defined_private(tree) for path, tree in trees.items()}
    project = set().union(*own.values())
    found: list[tuple[Path, int, str]] = []
    for path, tree in trees.items():
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found += [(where, node.lineno, f"from {node.module} import {a.name}")
                          for a in node.names if _private(a.name)]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in project and node.attr not in own[path]:
                    found.append((where, node.lineno, ast.unparse(node)))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2):
                name = node.args[1]
                if (isinstance(name, ast.Constant) and isinstance(name.value, str) and _private(name.value)
                        and name.value in project and name.value not in own[path]):
                    found.append((where, node.lineno, ast.unparse(node)))
    return [f"{where}:{line}: {text}" for where, line, text in sorted(found)]


def test_the_private_name_check_sees_each_kind_of_reach_in(tmp_path):
    trees = {REPO / "harness" / "a.py": ast.parse("_SECRET = 1\nclass A:\n    def _open(self):\n        self._x = 1\n"),
             REPO / "tools" / "b.py": ast.parse("from harness.a import _SECRET\nimport harness.a as a\n"
                                               "a._SECRET = 2\nrunner._open()\nsetattr(a, '_SECRET', 3)\n"
                                               "obj._unrelated_library_name\n")}
    assert private_name_offenders(trees) == [
        "tools/b.py:1: from harness.a import _SECRET", "tools/b.py:3: a._SECRET", "tools/b.py:4: runner._open",
        "tools/b.py:5: setattr(a, '_SECRET', 3)"]


def test_no_private_name_is_imported_across_modules():
    offenders = private_name_offenders(_sources(*CHECKED))
    assert not offenders, "private names used across modules (make them public or move them):\n" + "\n".join(offenders)


def _imported_modules(tree: ast.Module) -> list[tuple[int, str]]:
    """Every module an import statement names (anywhere in the file), with its line."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_reports_import_nothing_from_harness_metrics():
    """The report renders what the harness computed: no metric code, not even through an import."""
    found = [f"{path.relative_to(REPO)}:{line}: {module}" for path, tree in _sources("reports").items()
             for line, module in _imported_modules(tree)
             if module == "harness.metrics" or module.startswith("harness.metrics.")]
    assert not found, "\n".join(found)
    loaded = _python("import sys, reports.run_page, reports.compare, reports.render\n"
                     "print(sorted(m for m in sys.modules if m == 'harness.metrics' or m.startswith('harness.metrics.')))")
    assert loaded == "[]"


def test_loading_data_imports_neither_the_methods_nor_torch_for_the_types():
    assert _python("import sys, harness.data.loading\nprint('harness.registry' in sys.modules)") == "False"
    assert _python("import sys, harness.data.types, harness.data.file_audit, harness.data.eda_sample\n"
                   "print(sorted({'torch', 'harness.registry'} & set(sys.modules)))") == "[]"
    assert _python("from harness.api import ImageSet, LABELS\nfrom harness.data import types\n"
                   "print(ImageSet is types.ImageSet and LABELS == types.LABELS)") == "True"


def test_the_eda_modules_import_one_way_at_module_top():
    names = ("eda", "eda_figures", "eda_sample", "file_audit", "input_audit")
    trees = {name: ast.parse((REPO / "harness" / "data" / f"{name}.py").read_text(encoding="utf-8")) for name in names}
    edges = {}
    for name, tree in trees.items():
        top = {id(node) for node in tree.body}
        imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
        hidden = [node.lineno for node in imports if id(node) not in top
                  and any(m.startswith("harness.data.") for _, m in _imported_modules(ast.Module([node], [])))]
        assert not hidden, f"harness/data/{name}.py imports harness.data modules inside functions (lines {hidden})"
        edges[name] = {m.split(".")[2] for _, m in _imported_modules(tree)
                       if m.startswith("harness.data.") and m.split(".")[2] in names}
    for name in names:  # no module reaches back to one that imports it
        seen, todo = set(), list(edges[name])
        while todo:
            other = todo.pop()
            assert other != name, f"import cycle through harness/data/{name}.py"
            if other not in seen:
                seen.add(other)
                todo += edges[other]
