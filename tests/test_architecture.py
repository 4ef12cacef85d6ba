"""The architecture holds (docs/architecture.md): imports go one way between neft's packages, and every unit is small.

``LAYERS`` is the one place that states the order: a package may import its own modules and the packages of lower
layers, never a package of its own layer or a higher one. The top-level ``neft/__init__.py`` (the public API) and
``neft/__main__.py`` sit above every layer.
"""

import ast
import shutil
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "neft"
LAYERS = (  # lowest first; packages on one line are one layer and never import each other
    ("common",),
    ("data", "models"),
    ("chip", "store"),
    ("deployment", "cost"),
    ("evaluation",),
    ("training",),
    ("reporting",),
    ("runs",),
    ("experiments",),
    ("cli",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_CLASS_LINES = 400, 60, 150


def _imported_packages(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, package)`` of every neft package that the module at ``path`` imports (absolute or relative)."""
    parts = path.relative_to(root).with_suffix("").parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").split(".") if node.module else []
            if node.level:  # relative: resolve against the module's own package
                base = ["neft", *parts[: len(parts) - node.level], *base]
            targets = [base + [alias.name] if len(base) == 1 else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target[0] == "neft" and len(target) > 1:
                found.append((node.lineno, target[1]))
    return found


def upward_imports(root: Path = SOURCE) -> list[str]:
    """Every import of a package that is not in a lower layer than the importing module's own package."""
    wrong = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if len(parts) == 1:  # neft/__init__.py and neft/__main__.py: the public API and the entry point
            continue
        own = parts[0]
        assert own in RANK, f"package {own!r} of {path} has no layer: add it to LAYERS and docs/architecture.md"
        for line, package in _imported_packages(path, root):
            if package == own:
                continue
            if package not in RANK:
                wrong.append(f"{path.relative_to(root)}:{line} imports neft.{package} (the top-level package, or "
                             "a package without a layer)")
            elif RANK[package] >= RANK[own]:
                wrong.append(f"{path.relative_to(root)}:{line}: {own} (layer {RANK[own]}) imports {package} "
                             f"(layer {RANK[package]})")
    return wrong


def oversized_units(root: Path = SOURCE) -> list[str]:
    """Modules over ``MAX_MODULE_LINES`` lines, functions over ``MAX_FUNCTION_LINES`` and classes over
    ``MAX_CLASS_LINES`` (docstrings included)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"module {path.relative_to(root)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                     ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
            if limit and node.end_lineno - node.lineno + 1 > limit:
                found.append(f"{type(node).__name__} {path.relative_to(root)}:{node.name}: "
                             f"{node.end_lineno - node.lineno + 1} lines")
    return found


def test_imports_go_one_way():
    assert upward_imports() == []


def test_every_package_is_a_layer_and_says_what_it_may_import():
    packages = {path.parent.name for path in SOURCE.glob("*/__init__.py")}
    assert packages == set(RANK)
    for package in packages:
        doc = ast.get_docstring(ast.parse((SOURCE / package / "__init__.py").read_text()))
        assert doc and ("May import" in doc or "imports nothing" in doc), package


@pytest.mark.parametrize("module, line, expected", [
    ("chip/mapping.py", "from neft.training import objectives", "chip (layer 2) imports training (layer 5)"),
    ("evaluation/metrics.py", "from ..reporting import report", "evaluation (layer 4) imports reporting (layer 6)"),
    ("data/own.py", "import neft.models", "data (layer 1) imports models (layer 1)"),
    ("common/seeds.py", "from neft import train", "imports neft.train (the top-level package"),
])
def test_an_upward_import_is_caught(tmp_path, module, line, expected):
    copy = tmp_path / "neft"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / module).write_text((copy / module).read_text() + f"\n{line}\n")
    wrong = upward_imports(copy)
    assert len(wrong) == 1 and module in wrong[0] and expected in wrong[0], wrong


def test_no_unit_is_oversized():
    assert oversized_units() == []


def test_an_oversized_function_is_caught(tmp_path):
    copy = tmp_path / "neft"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (copy / "common" / "seeds.py").write_text((copy / "common" / "seeds.py").read_text() + f"\n\ndef long():\n{body}")
    added = set(oversized_units(copy)) - set(oversized_units())
    assert added == {f"FunctionDef common/seeds.py:long: {MAX_FUNCTION_LINES + 1} lines"}
