"""The package's structure: imports go one way (import-linter contracts in pyproject.toml),
optional extras stay out of the core, and ``import leadscoring`` is light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    res = _lint(ROOT / "pyproject.toml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout


def test_the_check_sees_a_reversed_flow(tmp_path):
    """The same layers upside down must be reported broken: the check reads real imports."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"layers = \[\n(.*?)\]", text, re.S)
    assert block is not None
    reversed_layers = "".join(reversed(block.group(1).splitlines(keepends=True)))
    flipped = tmp_path / "flipped.toml"
    flipped.write_text(text.replace(block.group(1), reversed_layers), encoding="utf-8")
    res = _lint(flipped)
    assert res.returncode != 0 and "BROKEN" in res.stdout


def test_core_imports_no_optional_extra():
    code = (
        "import sys, leadscoring, leadscoring.ingest.schema, leadscoring.training.pipeline, "
        "leadscoring.serving.scorer, leadscoring.serving.batch, leadscoring.loop.retrain; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'dask', 'distributed', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, leadscoring; print(len([m for m in sys.modules "
            "if m.split('.')[0] in ('pandas', 'sklearn', 'xgboost', 'numpy')]))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert light.stdout.strip() == "0"


def test_source_notebooks_are_valid_and_committed_without_outputs():
    import nbformat

    notebooks = sorted((ROOT / "03_Notebooks").glob("*.ipynb"))
    assert len(notebooks) == 10
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)  # e.g. cell ids in a 4.4 notebook make papermill warn "Notebook JSON is invalid"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.outputs or c.execution_count for c in code), f"{path.name} has outputs"
        assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1, f"{path.name}: one parameters cell"


def test_no_module_imports_private_names_of_another():
    """A name starting with "_" belongs to its module: importing it from elsewhere in the
    package means the boundary between the two modules is in the wrong place."""
    import ast

    found = []
    for path in sorted((ROOT / "leadscoring").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leadscoring"):
                found += [
                    f"{path.relative_to(ROOT)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, found
