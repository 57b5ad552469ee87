"""The architecture as tests: the import contracts of DESIGN §3 (import-linter, configured in
pyproject.toml) and pieces small enough to read in one sitting."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 250


def test_import_contracts_hold():
    result = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
                             "sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_functions_and_classes_stay_small():
    long = []
    for path in sorted((ROOT / "bgit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                size = node.end_lineno - node.lineno + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if size > limit:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({size} lines)")
    assert not long, "\n".join(long)
