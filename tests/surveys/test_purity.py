"""surveys/ is pure Python: it never imports the web framework, the ORM or the templates."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SURVEYS = Path(__file__).resolve().parents[2] / "surveys"
FORBIDDEN = ("litestar", "sqlalchemy", "advanced_alchemy", "jinja2", "safespace")


def test_surveys_is_a_package() -> None:
    assert (SURVEYS / "__init__.py").is_file()


def test_surveys_source_imports_nothing_forbidden() -> None:
    for path in SURVEYS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_importing_surveys_loads_no_framework() -> None:
    code = (
        "import sys, importlib, pkgutil, surveys\n"
        "for m in pkgutil.walk_packages(surveys.__path__, 'surveys.'): importlib.import_module(m.name)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
