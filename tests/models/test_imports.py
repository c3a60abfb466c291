"""paretoctl.models imports itself in one direction only (no cycles, not even inside functions)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import paretoctl.models

MODELS_DIR = Path(paretoctl.models.__file__).parent


def _internal_imports(path: Path) -> set[str]:
    """``paretoctl.models`` modules a file imports anywhere (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("paretoctl.models.") and n.count(".") >= 2}
    return found


def test_model_modules_form_no_import_cycle() -> None:
    modules = {p.stem for p in MODELS_DIR.glob("*.py") if p.stem != "__init__"}
    graph = {m: _internal_imports(MODELS_DIR / f"{m}.py") & modules - {m} for m in modules}
    assert "vit_fmnist" in graph["loading"]  # the graph is really read (loading builds on the bundled model)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*path, module, dep])}"
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [])


def test_bundled_module_imports_first_and_loading_keeps_its_names() -> None:
    code = (
        "import paretoctl.models.vit_fmnist as v, paretoctl.models.loading as l, timm;"
        "assert l.BUNDLED_WEIGHTS == v.BUNDLED_WEIGHTS and l.load_bundled_weights is v.load_bundled_weights;"
        "assert l.bundled_model_card is v.bundled_model_card and issubclass(l.CheckpointError, ValueError);"
        "m = timm.create_model('vit_fmnist_patch4_28', pretrained=True);"
        "assert l.checkpoint_hash(l.ModelSpec()) == l.bundled_model_card()['sha256']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
