"""The import rules of ARCHITECTURE.md, read from the source: models know no files or commands,
evaluation knows no training, and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "src" / "mosquito_ast", ROOT / "lite" / "src" / "mosquito_ast_lite")
SOURCES = [path for package in PACKAGES for path in package.rglob("*.py")]


def module_name(path: Path) -> str:
    package = next(package for package in PACKAGES if package in path.parents)
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every mosquito_ast module `path` imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c.startswith("mosquito_ast") and c in MODULES}
    return found - {name}


MODULES = {module_name(p) for p in SOURCES}
GRAPH = {module_name(p): imported_modules(p) for p in SOURCES}


def imports_of(prefix: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in GRAPH.items() if m == prefix or m.startswith(prefix + ".")}


def test_models_are_modules_only():
    forbidden = ("mosquito_ast_lite.io", "mosquito_ast.config", "mosquito_ast.cli", "mosquito_ast.checkpoints",
                 "mosquito_ast.training", "mosquito_ast.commands", "mosquito_ast.inference", "mosquito_ast.evaluation")
    for module, deps in imports_of("mosquito_ast.models").items():
        bad = sorted(d for d in deps if d.startswith(forbidden))
        assert not bad, f"{module} imports {bad}"


def test_evaluation_does_not_import_training_or_the_cli():
    scoring = {**imports_of("mosquito_ast.inference"), **imports_of("mosquito_ast.evaluation"),
               **imports_of("mosquito_ast.commands.evaluate")}
    for module, deps in scoring.items():
        bad = sorted(d for d in deps if d.startswith(("mosquito_ast.training", "mosquito_ast.cli")))
        assert not bad, f"{module} imports {bad}"


def test_nothing_but_the_entry_points_imports_the_cli():
    for module, deps in GRAPH.items():
        if "mosquito_ast.cli" in deps:
            assert module == "mosquito_ast.__main__", f"{module} imports the cli"


def test_no_module_imports_itself_back():
    """Modules (a package counts as its __init__) form no cycle."""
    graph = GRAPH
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [module, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
