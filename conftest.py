"""pytest at the repository root: every notebook kernel nbval starts (``make check-notebooks``) gets the one
notebook environment that ``make outputs`` and the grader use (``course_utils.maintenance.notebook_env``)."""
import os

from course_utils.maintenance.notebook_env import ENV

os.environ.update(ENV)
