"""Student copies are generated from the solution notebooks: stubs, stored expected errors, staleness."""
from __future__ import annotations

import nbformat
import pytest

from course_utils.grading.checks import stub_message
from course_utils.grading.student_copies import (
    BEGIN,
    END,
    EXERCISES,
    RAISES,
    SOLUTIONS,
    assigned_names,
    build,
    is_answer,
    is_check,
    release,
    render,
    solution_paths,
    strip_solutions,
    student_copy,
)


def test_committed_student_copies_are_up_to_date(tmp_path):
    stale = build(write=False)
    assert not stale, f"run `python -m course_utils exercises build`: stale {[p.name for p in stale]}"


def test_a_changed_solution_makes_its_copy_stale(tmp_path):
    (tmp_path / "solutions").mkdir()
    path = solution_paths()[0]
    nb = nbformat.read(path, as_version=4)
    nbformat.write(nb, tmp_path / "solutions" / path.name)
    assert build(tmp_path / "solutions", tmp_path) == [tmp_path / path.name]
    assert build(tmp_path / "solutions", tmp_path, write=False) == []
    nb.cells[0].source += "\nOne more line."
    nbformat.write(nb, tmp_path / "solutions" / path.name)
    assert build(tmp_path / "solutions", tmp_path, write=False) == [tmp_path / path.name]


def test_stub_sets_each_answer_name_to_none():
    source = f"x = 1\n{BEGIN}\nimport os\nmodel, tok = make()\nfolder = 'a'\nmodel.save(folder)\n{END}\nprint(x)"
    out = strip_solutions(source)
    assert "model = None\ntok = None\nfolder = None" in out and "make()" not in out
    assert out.startswith("x = 1\n# YOUR CODE HERE") and out.endswith("print(x)")
    assert assigned_names("a: int = 1\nb += 2\nfor c in d: pass") == ["a", "b"]
    assert assigned_names("def place(m):\n    return m\nplaced, device = place(x)") == ["place", "placed", "device"]


def test_region_without_assignment_raises_not_implemented():
    assert 'raise NotImplementedError("Write your answer here")' in strip_solutions(f"{BEGIN}\nm.save('x')\n{END}")


def test_unbalanced_markers_are_one_clear_error():
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions(f"{BEGIN}\nx = 1\n")


@pytest.mark.parametrize("path", solution_paths(), ids=lambda p: p.stem)
def test_student_copy_hides_answers_and_expects_check_failures(path):
    solution = nbformat.read(path, as_version=4)
    copy = student_copy(solution)
    nbformat.validate(copy)
    assert solution.metadata.kernelspec.name == "python3" and copy.metadata == solution.metadata
    checks = [c for c in copy.cells if is_check(c)]
    assert 1 <= len(checks) <= 5
    for cell in copy.cells:
        assert BEGIN not in cell.source and END not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None  # not run yet: the build runs it once
        if is_check(cell):
            assert RAISES in cell.metadata.tags and cell.metadata.nbgrader.locked
        elif is_answer(cell):
            assert "# YOUR CODE HERE" in cell.source
    answers = [c for c in solution.cells if is_answer(c)]
    assert all(BEGIN in c.source for c in answers) and len(answers) == len(checks)
    assert render(student_copy(solution)) == render(copy)  # deterministic


@pytest.mark.parametrize("path", solution_paths(), ids=lambda p: p.stem)
def test_committed_copy_stores_its_run_with_the_unanswered_check_failures(path):
    stored = nbformat.read(EXERCISES / path.name, as_version=4)
    code = [c for c in stored.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # one run, top to bottom
    for cell in code:
        if is_check(cell):
            gid = cell.metadata.nbgrader.grade_id
            assert [(o.output_type, o.ename, o.evalue) for o in cell.outputs] == [
                ("error", "CheckFailed", stub_message(gid))]
        elif is_answer(cell):
            assert cell.outputs == []
        else:
            assert not any(o.output_type == "error" for o in cell.outputs), cell.source[:80]


def test_solutions_have_nbgrader_metadata_and_stored_passes():
    for path in solution_paths(SOLUTIONS):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.nbgrader
            assert meta.schema_version == 3 and meta.grade_id
            if is_check(cell):
                assert meta.locked and meta.points > 0
                text = "".join(o.get("text", "") for o in cell.outputs)
                assert text.startswith(f"✓ {meta.grade_id}: "), (path.name, meta.grade_id)


def test_release_writes_the_handout_without_solutions_or_outputs(tmp_path):
    dest = tmp_path / "handout"
    written = release(dest)
    assert sorted(p.name for p in dest.iterdir()) == sorted([p.name for p in solution_paths()] + ["README.md"])
    assert written == [dest / p.name for p in solution_paths()]
    for path in solution_paths():
        solution = nbformat.read(path, as_version=4)
        handed = nbformat.read(dest / path.name, as_version=4)
        nbformat.validate(handed)
        answers = {c.metadata.nbgrader.grade_id: c.source for c in solution.cells if is_answer(c)}
        for cell in handed.cells:
            assert BEGIN not in cell.source and END not in cell.source
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
            if is_answer(cell):
                assert cell.source != answers[cell.metadata.nbgrader.grade_id] and "# YOUR CODE HERE" in cell.source
        assert render(handed) == render(student_copy(solution))


def test_release_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        release(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
