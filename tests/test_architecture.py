"""The layout's rules, read from the source: no import circles, arrows point down the layers,
the analytic count stays pure Python, files stay small, tests mirror the packages and modules."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lvdata", "flopcount", "lora", "experiments")

# Layers, lowest first: a module may import its own layer and the layers below, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lvdata",),
    ("flopcount.count",),
    ("flopcount.ledger", "lora"),
    ("flopcount.budget", "flopcount.trace", "flopcount.audit"),
    ("flopcount.integrations",),
    ("flopcount", "flopcount.cli", "flopcount.__main__"),
    ("experiments.data",),
    ("experiments.models",),
    ("experiments.training",),
    ("experiments.forecasting",),
    ("experiments.basemodel",),
    ("experiments.pipeline",),
    ("experiments", "experiments.cli", "experiments.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """The project modules ``name`` imports at run time (module level or inside functions;
    ``if TYPE_CHECKING`` blocks excluded). ``from pkg import x`` is an edge to ``pkg.x`` when
    that is a module, else to ``pkg`` (its ``__init__``)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def layer_of(name: str) -> int:
    best, rank = -1, None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank is not None, f"module {name} is in no layer of LAYERS: add it"
    return rank


def test_every_module_is_placed_in_a_layer():
    for name in MODULES:
        layer_of(name)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk of ``graph``, as the circle it closes."""
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state[target] == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif state[target] == 0:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if state[name] == 0:
            visit(name, [])
    return cycles


def test_no_import_circles():
    cycles = find_cycles(GRAPH)
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_circle_check_finds_circles_and_reads_function_level_imports():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "experiments.training.loop" in GRAPH["experiments.training"]  # a package imports its modules
    assert "flopcount.trace.hooks" in GRAPH["experiments.pipeline.stages"]  # imported inside a function


def test_arrows_point_down_the_layers():
    upward = [f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
              for source, targets in GRAPH.items() for target in targets if layer_of(target) > layer_of(source)]
    assert upward == []


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("flopcount.count")))
def test_the_analytic_count_is_pure_python(name):
    """No torch, numpy, fvcore or SQLite anywhere in the count; transformers only where
    ``model_shape`` reads a hub id's config (inside that function, on demand)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    every = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    every |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not every & {"torch", "fvcore", "numpy", "sqlite3"}, every
    assert "transformers" not in top, top


@pytest.mark.parametrize("name", sorted(MODULES))
def test_files_stay_small(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{MODULES[name]} has {lines} lines: split it"


def test_tests_mirror_the_packages():
    """Every package of the source has a test folder of the same path."""
    missing = [name for name, path in MODULES.items() if path.name == "__init__.py" and name not in PACKAGES
               and not (ROOT / "tests" / Path(*name.split("."))).is_dir()]
    assert missing == []


# Modules with no behaviour of their own, hence no test module. Besides these, every package's
# __init__ is exempt: it re-exports its package's public API, tested through the modules it exports.
NO_BEHAVIOUR = {
    "experiments.__main__": "only calls experiments.cli.main (tests/experiments/test_cli.py)",
    "flopcount.__main__": "only calls flopcount.cli.main (tests/flopcount/test_cli.py)",
}


def mirror_of(name: str) -> Path:
    """The test module of source module ``name``: ``a.b.c`` -> ``tests/a/b/test_c.py``
    (``__main__`` -> ``test_main.py``)."""
    *package, leaf = name.split(".")
    return ROOT / "tests" / Path(*package) / f"test_{'main' if leaf == '__main__' else leaf}.py"


def test_every_module_with_behaviour_has_its_test_module():
    assert set(NO_BEHAVIOUR) <= set(MODULES), "an exemption names a module that no longer exists"
    missing = [f"{name} -> {mirror_of(name).relative_to(ROOT)}" for name, path in MODULES.items()
               if path.name != "__init__.py" and name not in NO_BEHAVIOUR and not mirror_of(name).is_file()]
    assert missing == [], "source modules without a test module:\n" + "\n".join(missing)
