"""notebooks/START_HERE.md, the page `make lab` opens on: it links every lesson and exercise, with README's times."""
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
START = ROOT / "notebooks" / "START_HERE.md"


def _rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows that link a lesson notebook: notebook file name -> the row's cells."""
    rows = {}
    for line in text.splitlines():
        link = re.search(r"\]\((?:notebooks/)?(\d\d_\w+\.ipynb)\)", line)
        if line.startswith("|") and link:
            rows[link.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    return rows


def test_every_lesson_and_its_exercise_is_linked():
    text = START.read_text()
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(_rows(text)) == lessons
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert (START.parent / target).resolve().is_file(), f"START_HERE.md links {target}, which does not exist"


def test_times_match_the_readme_syllabus():
    mine, readme = _rows(START.read_text()), _rows((ROOT / "README.md").read_text())
    assert {nb: row[-1] for nb, row in mine.items()} == {nb: row[-1] for nb, row in readme.items()}


def test_what_the_steps_say_to_click_is_a_link_text_of_the_page():
    text = START.read_text()
    links = set(re.findall(r"\[([^\]]+)\]\(", text))
    to_click = re.findall(r"click the first lesson, \*\*([^*]+)\*\*", " ".join(text.split()))
    assert to_click and all(name in links for name in to_click), (to_click, links)


def test_no_glyph_the_lab_fonts_lack_in_the_course_texts():
    """🤗 showed as an empty box in JupyterLab in Chromium (no emoji font in the course's images)."""
    texts = [START, ROOT / "README.md", *(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "exercises").glob("*.ipynb")]
    assert [p.name for p in texts if "🤗" in p.read_text(encoding="utf-8")] == []
