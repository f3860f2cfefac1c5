"""Import a file of ``scripts/`` in a test (the scripts are files, not a package)."""
import importlib.util
from pathlib import Path


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a fresh module (the scripts are files, not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
