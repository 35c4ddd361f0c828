"""The module layout stays what shared/STYLE.md and the README describe: declared layers, no
import cycles, short functions, a small package root."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 60
MAX_ROOT_MODULES = 8


def test_import_layers_contract_is_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        message = "import-linter (lint-imports) is not installed: pip install -e '.[test]'"
        if os.environ.get("CI", "").lower() in ("1", "true"):  # .ci/run and CI services set CI=true
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run([exe, "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_import_cycles():
    import grimp

    graph = grimp.build_graph("lerf", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} <-> {imported}")
    assert not cycles, cycles


def _python_files_outside_tests():
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", ".venv", "build") or any(p.startswith(".") for p in rel.parts):
            continue
        yield rel, path


def test_no_long_functions_outside_tests():
    long = []
    for rel, path in _python_files_outside_tests():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def _root_entries() -> list[str]:
    root = REPO / "lerf"
    modules = [p.stem for p in root.glob("*.py") if p.stem != "__init__"]
    packages = [p.name for p in root.iterdir() if (p / "__init__.py").is_file()]
    return sorted(modules), sorted(packages)


def test_package_root_is_small():
    modules, _ = _root_entries()
    assert len(modules) <= MAX_ROOT_MODULES, modules


def test_readme_layout_names_every_package_and_root_module():
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Layout\s*```(.*?)```", text, re.S)
    assert block, "README has no ## Layout code block"
    modules, packages = _root_entries()
    missing = [f"lerf/{p}/" for p in packages if f"lerf/{p}/" not in block.group(1)]
    missing += [m for m in modules if not m.startswith("_") and f"{m}.py" not in block.group(1)]
    assert not missing, f"README layout misses {missing}"
    stale = [path for path in re.findall(r"lerf/[\w/.]+", block.group(1)) if not (REPO / path).exists()]
    assert not stale, f"README layout names paths that do not exist: {stale}"
