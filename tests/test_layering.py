"""The house rules on imports: core/ has no UI, dashboard/ has no TensorFlow, and pages start fast."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UI = {"streamlit"}
HEAVY = {"tensorflow", "keras", "sklearn", "tensorflow_datasets"}


def imported_roots(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else ast.walk(tree)
    roots = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}/"
    return files


def test_core_never_imports_streamlit():
    offenders = {str(p.relative_to(ROOT)): imported_roots(p) & UI for p in python_files("core")}
    assert not {k: v for k, v in offenders.items() if v}


def test_dashboard_never_imports_tensorflow_keras_or_sklearn():
    offenders = {str(p.relative_to(ROOT)): imported_roots(p) & HEAVY for p in python_files("dashboard")}
    assert not {k: v for k, v in offenders.items() if v}


def test_core_modules_the_pages_use_do_not_load_tensorflow_on_import():
    used = set()
    for page in python_files("dashboard"):
        tree = ast.parse(page.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "core":
                used |= {f"core.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
                used.add(node.module)
    assert used
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in sorted(used))
        + ("heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\nassert not heavy, heavy\n")
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
