"""The import and size rules of ARCHITECTURE.md, read from the source: every module imports only its own
layer or the layers below it (lazy imports count), no two packages import each other, no module imports
itself back through others, models know no files or commands, inference and evaluation know no training,
and no file or function grows past the limits except the listed ones, a list that may only shrink."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "src" / "mosquito_ast", ROOT / "lite" / "src" / "mosquito_ast_lite")
SOURCES = [path for package in PACKAGES for path in package.rglob("*.py")]

# ARCHITECTURE.md's layer table, bottom first: a module belongs to the layer of its longest listed prefix.
LAYERS = {
    "field runtime": ("mosquito_ast_lite",),
    "signal": ("mosquito_ast.data", "mosquito_ast.features", "mosquito_ast.augment", "mosquito_ast.segment",
               "mosquito_ast.synth", "mosquito_ast.sides", "mosquito_ast.splits", "mosquito_ast.leakage",
               "mosquito_ast.hardware"),
    "models": ("mosquito_ast.models",),
    "files": ("mosquito_ast.checkpoints",),
    "parameters": ("mosquito_ast.params", "mosquito_ast.param_groups", "mosquito_ast.config", "mosquito_ast.scoring_config",
                   "mosquito_ast.split_config", "mosquito_ast.recipes"),
    "library": ("mosquito_ast.training", "mosquito_ast.inference", "mosquito_ast.evaluation"),
    "commands": ("mosquito_ast.commands",),
    "sweep": ("mosquito_ast.sweep",),
    "entry": ("mosquito_ast", "mosquito_ast.cli", "mosquito_ast.__main__", "mosquito_ast.api", "mosquito_ast.demo"),
}
# Known exceptions: each may only disappear.
UPWARD_IMPORTS: set[tuple[str, str]] = set()
MAX_FILE_LINES, MAX_FUNCTION_LINES = 320, 60
LONG_FILES: set[str] = set()
LONG_FUNCTIONS: set[str] = set()


def module_name(path: Path) -> str:
    package = next(package for package in PACKAGES if package in path.parents)
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p) for p in SOURCES}


def imported_modules(path: Path) -> set[str]:
    """Every mosquito_ast module `path` imports, at module level or inside functions. `from pkg import x`
    counts as importing `pkg.x` when that is a module, else `pkg`; the package root's `__version__` is a
    constant, not an import of the root (whose `__getattr__` loads the API)."""
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
            candidates = {f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                          for alias in node.names if (target, alias.name) != ("mosquito_ast", "__version__")}
        elif isinstance(node, ast.Import):
            candidates = {alias.name for alias in node.names}
        else:
            continue
        found |= candidates & MODULES
    return found - {name}


GRAPH = {module_name(p): imported_modules(p) for p in SOURCES}


def layer_of(module: str) -> int:
    """The position of `module`'s layer in LAYERS, bottom 0."""
    matches = [(len(prefix), rank) for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of ARCHITECTURE.md's table"
    return max(matches)[1]


def part_of(module: str) -> str:
    """The package part a module belongs to: a subpackage (`mosquito_ast.training`) or a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports_of(prefix: str) -> dict[str, set[str]]:
    return {m: deps for m, deps in GRAPH.items() if m == prefix or m.startswith(prefix + ".")}


def test_every_module_imports_only_its_layer_or_below():
    upward = {(module, dep) for module, deps in GRAPH.items() for dep in deps if layer_of(dep) > layer_of(module)}
    names = list(LAYERS)
    new = sorted(upward - UPWARD_IMPORTS)
    assert not new, "imports up the layer table: " + "; ".join(
        f"{m} ({names[layer_of(m)]}) -> {d} ({names[layer_of(d)]})" for m, d in new)
    assert UPWARD_IMPORTS <= upward, f"gone, remove from UPWARD_IMPORTS: {sorted(UPWARD_IMPORTS - upward)}"


def test_no_two_packages_import_each_other():
    edges = {(part_of(m), part_of(d)) for m, deps in GRAPH.items() for d in deps
             if part_of(m) != part_of(d) and (m, d) not in UPWARD_IMPORTS}
    both = sorted({tuple(sorted(edge)) for edge in edges if edge[::-1] in edges})
    assert not both, f"packages importing each other: {both}"


def test_models_are_modules_only():
    forbidden = ("mosquito_ast_lite.io", "mosquito_ast.config", "mosquito_ast.cli", "mosquito_ast.checkpoints",
                 "mosquito_ast.training", "mosquito_ast.commands", "mosquito_ast.inference", "mosquito_ast.evaluation")
    for module, deps in imports_of("mosquito_ast.models").items():
        bad = sorted(d for d in deps if d.startswith(forbidden))
        assert not bad, f"{module} imports {bad}"


def test_inference_and_evaluation_do_not_import_training():
    scoring = {**imports_of("mosquito_ast.inference"), **imports_of("mosquito_ast.evaluation"),
               **imports_of("mosquito_ast.commands.evaluate"), **imports_of("mosquito_ast.commands.predict")}
    for module, deps in scoring.items():
        bad = sorted(d for d in deps if d.startswith("mosquito_ast.training"))
        assert not bad, f"{module} imports {bad}"


def test_nothing_but_the_entry_points_imports_the_cli():
    for module, deps in GRAPH.items():
        if "mosquito_ast.cli" in deps:
            assert module == "mosquito_ast.__main__", f"{module} imports the cli"


def test_no_module_imports_itself_back():
    """Modules (a package counts as its __init__) form no cycle."""
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [module, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def sizes() -> tuple[set[str], set[str]]:
    """(files over MAX_FILE_LINES, functions over MAX_FUNCTION_LINES as `file:Class.name`), paths from src."""
    files, functions = set(), set()
    for path in SOURCES:
        name = path.relative_to(next(p for p in PACKAGES if p in path.parents).parent).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            files.add(name)
        scopes = [(node, "") for node in ast.parse(text).body]
        while scopes:
            node, outer = scopes.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualified = f"{outer}{node.name}"
                if not isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    functions.add(f"{name}:{qualified}")
                scopes += [(child, f"{qualified}.") for child in node.body]
    return files, functions


def test_no_new_long_files_or_functions():
    files, functions = sizes()
    assert files <= LONG_FILES, f"over {MAX_FILE_LINES} lines: {sorted(files - LONG_FILES)}"
    assert functions <= LONG_FUNCTIONS, f"over {MAX_FUNCTION_LINES} lines: {sorted(functions - LONG_FUNCTIONS)}"
    shrunk = sorted((LONG_FILES - files) | (LONG_FUNCTIONS - functions))
    assert not shrunk, f"now within the limits, remove from the known list: {shrunk}"
