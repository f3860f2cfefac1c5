"""Instructor tooling: grading exercise submissions (see ``grader.py``)."""

# Set in a graded kernel: check cells then only write their evidence under this folder (``checks.check``).
EVIDENCE_ENV = "COURSE_EVIDENCE"
