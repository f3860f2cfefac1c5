"""The house of course_utils: no import cycle (imports inside functions included), the learner's API never
depends on the instructor tooling, and an import inside a function says why it is there."""
import ast
from pathlib import Path

import course_utils

PACKAGE = Path(course_utils.__file__).parent
TOOLING = ("course_utils.grading", "course_utils.maintenance")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = importer.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                candidates = _resolve(name, path.name == "__init__.py", node)
            else:
                continue
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_resolve_relative_imports():
    node = ast.parse("from ..assets import course_model").body[0]
    assert _resolve("course_utils.grading.checks", False, node)[0] == "course_utils.assets"
    node = ast.parse("from . import tasks").body[0]
    assert "course_utils.tasks" in _resolve("course_utils.training", False, node)


def test_no_import_cycle_counting_imports_inside_functions():
    graph = _graph()
    # The package __init__ maps names to modules lazily; its TYPE_CHECKING imports are not run.
    graph["course_utils"] = set()
    assert len(graph) > 20
    assert _cycles(graph) == []


def test_learner_modules_do_not_depend_on_instructor_tooling():
    for name, targets in _graph().items():
        if name == "course_utils.__main__" or name.startswith(TOOLING) or name == "course_utils":
            continue
        assert not [t for t in targets if t.startswith(TOOLING)], name


def test_imports_inside_functions_give_their_reason():
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    window = lines[fn.lineno - 1:node.lineno]
                    doc = ast.get_docstring(fn) or ""
                    if not any(line.strip().startswith("#") for line in window) and "import" not in doc:
                        unexplained.append(f"{name}:{node.lineno}")
    assert not unexplained, f"imports inside functions without a one-line reason: {unexplained}"
