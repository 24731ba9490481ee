"""ARCHITECTURE.md's dependency rule: aikd/ imports none of ray, optuna, mlflow; nothing imports search/."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"ray", "optuna", "mlflow"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_aikd_sources_import_no_search_libraries():
    offenders = {str(p.relative_to(ROOT)): _imports(p) & FORBIDDEN for p in (ROOT / "aikd").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_importing_every_aikd_module_loads_no_search_library():
    code = (
        "import sys, pkgutil, importlib, aikd\n"
        "for m in pkgutil.walk_packages(aikd.__path__, 'aikd.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'ray', 'optuna', 'mlflow'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_nothing_imports_search():
    for pkg in ("aikd", "trainables", "spaces"):
        for p in (ROOT / pkg).rglob("*.py"):
            assert "search" not in _imports(p), p
