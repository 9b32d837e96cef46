"""The house's structure (DESIGN.md): every import between rooms runs down the house, never back up,
and no module reaches itself through its imports — lazy imports inside functions included, since a
circle hidden in a function is still a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import helios

PACKAGE = Path(helios.__file__).parent

# Rooms from the top of the house down; a module may import from its own room or any room above it.
ROOMS = [
    {"config", "devices", "media"},
    {"model"},
    {"encoders"},
    {"parallel"},
    {"sampling"},
    {"generation"},
    {"training"},
    {"synthetic"},
    {"bench"},
    {"serve"},
    {"recipes", "cli", "__init__", "__main__"},
]
RANK = {room: rank for rank, rooms in enumerate(ROOMS) for room in rooms}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The helios modules ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("helios")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("helios"):
                found.add(target)
                # ``from .x import y`` may import the submodule x.y
                found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def all_modules() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in imports_of(path) if t in files and t != name} for name, path in files.items()}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_back_up_the_house():
    upward = []
    for source, targets in all_modules().items():
        for target in targets:
            if RANK[room(target)] > RANK[room(source)]:
                upward.append(f"{source} → {target}")
    assert not upward, "imports running back up the house:\n" + "\n".join(sorted(upward))


def test_every_room_is_placed_in_the_house():
    rooms = {room(m) for m in all_modules()}
    assert rooms <= set(RANK), f"rooms missing from the house order: {sorted(rooms - set(RANK))}"


def test_no_module_imports_itself_through_a_circle():
    graph = {
        m: {t for t in targets if not m.startswith(t + ".") and t != "helios"} for m, targets in all_modules().items()
    }
    # A package's __init__ re-exporting its modules is not a circle of code; edges into a package
    # stand for the modules it re-exports and are followed through them.
    circles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" → ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_training_and_the_model_do_not_load_the_pipeline():
    modules = all_modules()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in modules.get(todo.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return seen

    for start in ("helios.training.trainer", "helios.training.objectives", "helios.model.transformer"):
        assert not any(m.startswith("helios.generation") for m in reach(start)), start
