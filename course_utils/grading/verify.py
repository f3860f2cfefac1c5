"""The grader's own verification of one check, run in the submission's kernel after the check cell.

The grader does not trust what a check cell printed or whether it raised: a submission can rebind
``check``, rewrite cells with an input transformer, or silence error output. After each check cell it
asks the kernel to evaluate one expression (an ``execute_request`` *user expression*: evaluated directly,
without input transformers, cell hooks or traceback display) that runs this file with ``runpy`` from a
snapshot the grader took before any submission ran, loads ``checks.py`` from that snapshot as a new module
object (never the one in ``sys.modules``), refuses answers whose types the notebook defined (an ``__eq__``
that always returns True), and reruns the check. The answer is a string carrying the grader's one-time nonce.
This file is run as a script (no package imports): it must stay standalone.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
import sysconfig
import types

PLAIN = (int, float, str, bool, bytes, type(None))
# A question may ask for a function (``def place(model)``): the check calls it on inputs of its own and
# compares what it returns type-strictly, so a plain function the notebook wrote is a real answer.
FUNCTIONS = (types.FunctionType,)
CONTAINERS = (list, tuple, set, frozenset)
_MAX_DEPTH = 4
# Methods that decide comparisons and truth: written anywhere but the installed libraries, they can fake a match.
_DECIDING = ("__eq__", "__ne__", "__bool__", "__len__", "__hash__", "__lt__", "__le__", "__gt__", "__ge__",
             "__float__", "__int__", "__index__", "__iter__", "__contains__", "__getattr__", "__getattribute__",
             "__instancecheck__", "__class__")


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    course = sys.modules.get("course_utils")
    if course is not None and getattr(course, "__file__", None):
        roots.add(os.path.dirname(course.__file__))
    return tuple(os.path.realpath(r) + os.sep for r in roots)


def _outside(filename: str, roots: tuple[str, ...]) -> bool:
    return not os.path.realpath(filename).startswith(roots)


def _defined_outside_libraries(kind: type, module) -> bool:
    """Whether ``kind``'s module, or a deciding method of it or its bases, is a file outside the installed
    libraries. Methods generated at run time (``<string>``: dataclasses) count as their class's module."""
    roots = _library_roots()
    file = getattr(module, "__file__", None)
    if (file is None and module.__name__ not in sys.builtin_module_names) or (file and _outside(file, roots)):
        return True
    for klass in kind.__mro__:
        for name in _DECIDING:
            code = getattr(klass.__dict__.get(name), "__code__", None)
            if code is not None and not code.co_filename.startswith("<") and _outside(code.co_filename, roots):
                return True
    return False


def foreign_type(value, depth: int = 0) -> str | None:
    """The name of a type in ``value`` that is not a real library type (defined in the notebook, or a
    subclass of a plain type), or None when every type is a genuine one."""
    kind = type(value)
    if kind in PLAIN or kind in FUNCTIONS or depth > _MAX_DEPTH:
        return None
    if kind in CONTAINERS:
        return next((bad for v in list(value)[:1000] if (bad := foreign_type(v, depth + 1))), None)
    if kind is dict:
        items = list(value.items())[:1000]
        return next((bad for kv in items for v in kv if (bad := foreign_type(v, depth + 1))), None)
    if any(issubclass(kind, plain) for plain in (*PLAIN[:-1], *CONTAINERS, dict)):
        return kind.__qualname__
    module = sys.modules.get(getattr(kind, "__module__", "") or "")
    if module is None or module.__name__ == "__main__" or _defined_outside_libraries(kind, module):
        return kind.__qualname__
    found = module
    for part in kind.__qualname__.split("."):
        found = getattr(found, part, None)
    return None if found is kind else kind.__qualname__


def load_checks(checks_path: str, name: str = "course_utils.grading._verified_checks"):
    """A new module object executed from ``checks_path`` (relative imports resolve in course_utils.grading)."""
    spec = importlib.util.spec_from_file_location(name, checks_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def verify(checks_path: str, check_id: str, nonce: str, **answers) -> str:
    """``"<nonce> PASS <✓ line>"`` or ``"<nonce> FAIL <✗ line>"`` for ``check_id`` on ``answers``."""
    for key, value in answers.items():
        bad = foreign_type(value)
        if bad is not None:
            return (f"{nonce} FAIL ✗ {check_id}: `{key}` is a {bad}, a type the notebook made: answers must be "
                    "the real objects (numbers, strings, lists, paths, models, tensors).")
    try:
        checks = load_checks(checks_path)
    except Exception as exc:  # noqa: BLE001 - the grader's snapshot could not load: never a pass
        return f"{nonce} FAIL ✗ {check_id}: the grader could not load its checks ({type(exc).__name__})"
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            checks.check(check_id, **answers)
    except checks.CheckFailed as failed:
        return f"{nonce} FAIL {str(failed).splitlines()[0] if str(failed) else check_id}"
    except BaseException as exc:  # noqa: BLE001 - anything else the learner's objects raised
        return f"{nonce} FAIL ✗ {check_id}: could not use your answer: {type(exc).__name__}"
    lines = [line for line in out.getvalue().splitlines() if line.startswith("✓")]
    return f"{nonce} PASS {lines[-1] if lines else '✓ ' + check_id}"
