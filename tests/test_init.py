"""course_utils/__init__.py: every exported name resolves to its defining module, in one hop for readers too."""
import ast
import subprocess
import sys
from pathlib import Path

import course_utils

INIT = Path(course_utils.__file__)


def test_every_export_resolves_to_the_module_the_map_names():
    for name, module in course_utils._EXPORTS.items():
        value = getattr(course_utils, name)
        defined_in = getattr(value, "__module__", None)
        if defined_in is not None and not isinstance(value, (str, tuple, Path)):
            assert defined_in == f"course_utils.{module}", (name, defined_in)


def test_type_checking_block_lists_exactly_the_exports():
    tree = ast.parse(INIT.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.name: node.module for node in block.body for a in node.names}
    assert seen == course_utils._EXPORTS, "the TYPE_CHECKING imports and _EXPORTS name different helpers"


def test_all_is_made_from_the_exports():
    """One hand-written list: ``__all__`` comes from ``_EXPORTS``, not typed out again."""
    tree = ast.parse(INIT.read_text())
    assigned = [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "__all__"]
    assert len(assigned) == 1 and not isinstance(assigned[0].value, ast.List), "__all__ is written out by hand"
    assert course_utils.__all__ == sorted(course_utils._EXPORTS)


def test_import_is_fast_and_side_effect_free():
    code = "import sys, course_utils; assert 'torch' not in sys.modules and 'peft' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_is_an_attribute_error():
    try:
        course_utils.no_such_helper  # noqa: B018
    except AttributeError as exc:
        assert "no_such_helper" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
