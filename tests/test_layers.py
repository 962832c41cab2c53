"""The layers of DESIGN.md hold: imports only go down, and no lora_lab module imports itself back.

Every `import`/`from ... import` in every module under lora_lab/ is read with `ast` — function-local imports
included, since they run too — and resolved to the most specific lora_lab module it names (`from lora_lab.jobs
import evaluate` is the module `lora_lab.jobs.evaluate`, `from lora_lab.jobs import run_job` is the package
`lora_lab.jobs`). A package's implicit import of its parent `__init__` is not an edge: that is how Python
works, not a choice of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lora_lab"
LIBRARY = ("training", "methods", "tasks", "models", "evaluation", "meta", "report", "loggers", "utils", "config",
           "registry")
ENTRY_AND_RECIPES = ("lora_lab.cli", "lora_lab.rank_entry", "lora_lab.jobs", "lora_lab.commands", "lora_lab.search")


def module_files() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The most specific module of `modules` that `name` (a module or a name inside one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            target = resolve(name, modules) if name.split(".")[0] == "lora_lab" else None
            if target and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_sees_local_imports_and_packages() -> None:
    graph = import_graph()
    assert "lora_lab.jobs" in graph["lora_lab.cli"]  # hydra_app runs run_job
    assert "lora_lab.jobs.evaluate" in graph["lora_lab.jobs"]  # a function-local import inside run_job's package
    assert "lora_lab.tasks.registry" in graph["lora_lab.tasks.arith"]


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_lora_lab_modules() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_library_and_foundation_never_import_entrypoints_or_recipes() -> None:
    back_arrows = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if any(is_under(module, f"lora_lab.{package}") for package in LIBRARY)
        for target in sorted(targets)
        if any(is_under(target, upper) for upper in ENTRY_AND_RECIPES)
    ]
    assert back_arrows == []


def test_recipes_never_import_entrypoints() -> None:
    back_arrows = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if is_under(module, "lora_lab.jobs")
        for target in sorted(targets)
        if target in ("lora_lab.cli", "lora_lab.rank_entry") or is_under(target, "lora_lab.commands")
    ]
    assert back_arrows == []


FOUNDATION = ("lora_lab.config", "lora_lab.utils", "lora_lab.registry")
# The one deliberate upward read (docs/architecture.md): validation and the ConfigStore look up the method and task
# registries, because an option's schema lives next to its code.
UPWARD_READS = {("lora_lab.config.store", "lora_lab.methods"), ("lora_lab.config.store", "lora_lab.tasks"),
                ("lora_lab.config.validate", "lora_lab.methods"), ("lora_lab.config.validate", "lora_lab.tasks")}


def test_foundation_reads_the_library_only_through_the_option_registries() -> None:
    library = tuple(f"lora_lab.{package}" for package in LIBRARY if package not in ("config", "utils", "registry"))
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        if any(is_under(module, f) for f in FOUNDATION)
        for target in targets
        if any(is_under(target, lib) for lib in library)
    }
    assert upward <= UPWARD_READS, f"new upward imports: {sorted(upward - UPWARD_READS)}"
