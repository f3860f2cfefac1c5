import subprocess
import sys


def test_exported_name_equal_to_its_module_name_gives_the_function():
    # ``quiz`` lives in course_utils/quiz.py: the lazy import of that submodule must not shadow the function.
    # (An explicit ``import course_utils.quiz`` before it still does: then use ``from course_utils.quiz import quiz``.)
    code = ("from course_utils import quiz\nimport course_utils\n"
            "assert callable(quiz) and callable(course_utils.quiz), (quiz, course_utils.quiz)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_export_resolves():
    import course_utils

    missing = [name for name in course_utils.__all__ if not hasattr(course_utils, name)]
    assert not missing
