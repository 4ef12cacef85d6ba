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
                 "report/custom_plot.png", "report/devices.md", "runs/ovf/results.json",
                 "runs/noise-injection/results.json"):
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


PRESETS = ROOT / "docs" / "presets.md"


def test_presets_doc_lists_every_key_and_variant():
    """docs/presets.md documents every key of every preset table and every variant key."""
    from neft.experiments import presets as experiments
    from neft.training import variants

    text = PRESETS.read_text()
    sections = {table: text.split(f"## `[{table}]`")[1].split("\n## ")[0] for table in experiments._SECTIONS}
    missing = [f"[{table}] {key}" for table, keys in experiments._SECTIONS.items() for key in sorted(keys)
               if f"`{key}`" not in sections[table]]
    assert not missing, f"docs/presets.md lacks {missing}"
    variant_rows = text.split("## Variants")[1]
    assert not [key for key in variants._KEYS if f"`{key}=`" not in variant_rows]
    for example in re.findall(r'`"([a-z-]+ [^"`]+)"`', variant_rows):
        variants.parse(example)


def test_presets_doc_blocks_are_valid_presets(tmp_path, monkeypatch):
    """Every ```toml block of docs/presets.md passes neft.experiments.load_preset (the own-model one with its
    model file and data set made here)."""
    import numpy as np

    from neft.experiments import load_preset

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "def make_net(num_classes, in_channels, depth=1):\n"
        "    net = nn.Sequential()\n"
        "    net.add_module('block1', nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, 8)))\n"
        "    net.add_module('block2', nn.Sequential(*[nn.Linear(8, 8) for _ in range(depth)]))\n"
        "    net.add_module('head', nn.Linear(8, num_classes))\n"
        "    return net\n")
    y = np.arange(20) % 2
    np.savez(tmp_path / "signals.npz", x_train=np.zeros((20, 8, 8), np.uint8), y_train=y,
             x_test=np.zeros((20, 8, 8), np.uint8), y_test=y)
    blocks = re.findall(r"^```toml\n(.*?)^```\s*$", PRESETS.read_text(), re.DOTALL | re.MULTILINE)
    assert len(blocks) >= 2
    for index, block in enumerate(blocks):
        path = tmp_path / f"block{index}.toml"
        path.write_text(block)
        load_preset(path)


def test_help_of_the_deployment_and_import_flags_reads_clearly():
    """--verified-sigma and --read-sigma say what their std is of; every valued chip-tune flag has a metavar;
    `neft import --method` lists its choices."""
    import argparse

    from neft.cli.main import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    evaluate = " ".join(commands["evaluate"].format_help().split())
    assert ("--verified-sigma S variation left on a write-verified device after verification: the std of its "
            "conductance as a fraction of its conductance range") in evaluate
    assert "--read-sigma S read noise, drawn afresh on every read (every test image): its std as a fraction" in evaluate
    assert "of a verified device" not in evaluate
    assert "--chip-tune-lr LR " in evaluate and "--chip-tune-batch N " in evaluate
    imported = " ".join(commands["import"].format_help().split())
    assert "--method {vanilla,noise-injection,ovf,irs,rcg,lipschitz,correctnet,distill}" in imported
