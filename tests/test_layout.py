"""The tests stand on their own: nothing under tests/ imports bench/ (benchmarks may change their
figures and helpers at will; the load both use lives in tests/load.py)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent


def test_no_test_imports_a_benchmark() -> None:
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(TESTS)}: {name}" for name in names if name.split(".")[0] in {"bench", "submit"}]
    assert offenders == []
