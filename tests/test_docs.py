"""The documentation: docs/api.md runs as written, and nothing cites internal notes instead of the docs."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
# "SPEC" / "DESIGN" as a document reference: "SPEC section 2", "SPEC 3", "(SPEC eq. 1)", "DESIGN decision 1",
# "DESIGN 7", "SPEC:" ... (case-sensitive whole words, as grep would find them)
REFERENCE = re.compile(r"\b(SPEC|DESIGN)\b")


def python_blocks(path: Path) -> list[str]:
    return PYTHON_BLOCK.findall(path.read_text())


def test_api_doc_has_python_blocks():
    blocks = python_blocks(API)
    assert len(blocks) >= 10, "docs/api.md should walk through the API in several ```python blocks"


def test_api_doc_runs_in_order(tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, executed in order in one namespace inside a temporary directory."""
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks: one thread is fastest, and far faster on a busy machine
    namespace: dict = {"__name__": "docs_api"}
    try:
        for index, block in enumerate(python_blocks(API), start=1):
            try:
                exec(compile(block, f"docs/api.md block {index}", "exec"), namespace)
            except Exception as error:  # name the failing block
                pytest.fail(f"docs/api.md python block {index} failed: {type(error).__name__}: {error}\n\n{block}")
    finally:
        torch.set_num_threads(threads)
    for name in ("report/report.md", "report/report.csv", "report/accuracy_vs_sigma.png", "report/python.md",
                 "report/custom_plot.png", "report/devices.md", "runs/ovf/results.json", "runs/noise-injection/results.json"):
        assert (tmp_path / name).is_file(), f"docs/api.md should have written {name}"


def _documentation_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in (ROOT / "src", ROOT / "docs", ROOT / "configs", ROOT / "benchmarks"):
        files += [p for p in folder.rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".toml", ".txt", ".json"}
                  and "egg-info" not in p.parts[-2]]
    return files


def test_no_references_to_internal_notes():
    """Sources and docs cite the docs (docs/method.md, ...) or the paper, never "SPEC ..." or "DESIGN ..."."""
    hits = []
    for path in _documentation_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if REFERENCE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "replace these references with docs/... sections or the paper:\n" + "\n".join(hits)
