"""The repository's house: no stray top-level files, and a vulture whitelist with no stale names."""
import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The layout README.md and CONTRIBUTING.md describe. A new top-level name belongs in one of these folders, or
# here with its reason.
TOP_LEVEL = {
    "README.md", "CONTRIBUTING.md", "pyproject.toml", "environment.yml", "Makefile", ".gitignore", "conftest.py",
    "notebooks", "exercises", "course_utils", "tests",
    ".ci",          # CI's entry point
    "scripts",      # setup steps the Makefile runs
    "benchmarks",   # `make bench` results the lessons show
    "config",       # Jupyter configuration the Makefile's lab targets read
}


def stray(paths) -> list[str]:
    """The top-level names of ``paths`` (repository-relative) that the layout does not expect."""
    return sorted({path.split("/", 1)[0] for path in paths if path} - TOP_LEVEL)


def test_no_stray_top_level_files():
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    found = stray(tracked.split("\0"))
    assert not found, f"unexpected top-level names in git: {found}; move them, or add them to TOP_LEVEL with a reason"


def test_a_stray_file_is_found():
    assert stray(["notes.txt", "course_utils/x.py", "README.md", "tmp/out.json"]) == ["notes.txt", "tmp"]


def _defined_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def test_vulture_whitelist_names_only_what_exists():
    """A name left here after its code is gone would hide a new dead helper of the same name."""
    whitelist = ast.parse((ROOT / "tests" / "vulture_whitelist.py").read_text())
    listed = {n.value.id for n in whitelist.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Name)}
    defined = set().union(*(_defined_names(p) for folder in ("course_utils", "scripts")
                            for p in (ROOT / folder).rglob("*.py")))
    stale = sorted(listed - defined)
    assert listed and not stale, f"tests/vulture_whitelist.py names what course_utils/ and scripts/ no longer define: {stale}"
