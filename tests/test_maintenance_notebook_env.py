"""course_utils.maintenance.notebook_env: the one environment every notebook runner uses."""
from course_utils.maintenance import notebook_env


def test_environment_is_offline_seeded_and_single_threaded():
    env = notebook_env.notebook_environ({"PATH": "/bin", "HF_HUB_OFFLINE": "0"})
    assert env["PATH"] == "/bin"
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYTHONHASHSEED"] == "0" and env["OMP_NUM_THREADS"] == "1"
