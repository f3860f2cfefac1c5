import subprocess
import sys

from course_utils import doctor
from course_utils.maintenance.notebook_env import notebook_environ


def test_doctor_passes_on_the_pinned_stack():
    run = subprocess.run([sys.executable, "-m", "course_utils", "doctor"], capture_output=True, text=True,
                         env=notebook_environ())
    print(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    for name in doctor.LOAD_PATHS:
        assert f"ok   {name}" in run.stdout
    assert "device" in run.stdout and "all checks passed" in run.stdout


def test_doctor_catches_a_silent_weight_drop(monkeypatch, capsys):
    """Simulate transformers 5.0-5.5: load_adapter succeeds but the LoRA weights stay at their init."""
    from transformers.integrations.peft import PeftAdapterMixin

    real = PeftAdapterMixin.load_adapter

    def silently_dropping(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        for module in self.modules():
            if hasattr(module, "reset_lora_parameters"):
                for name in module.lora_A:
                    module.reset_lora_parameters(name, True)
        return out

    monkeypatch.setattr(PeftAdapterMixin, "load_adapter", silently_dropping)
    assert doctor.run_doctor() == 1
    out = capsys.readouterr().out
    assert "FAIL transformers model.load_adapter(folder)" in out
    assert "loaded without error but the LoRA weights were not applied" in out
    assert "with transformers 5.23.0 and peft 0.21.2" in out
    assert "ok   PeftModel.from_pretrained(base, folder)" in out


def test_doctor_reports_a_raising_path_in_one_line(monkeypatch, capsys):
    def broken(base_loader, folder):
        raise OSError("disk on fire\nsecond line")

    monkeypatch.setitem(doctor.LOAD_PATHS, "broken path", broken)
    assert doctor.run_doctor(verbose=False) == 1
    out = capsys.readouterr().out
    assert "broken path does not reproduce" in out and "raised OSError: disk on fire" in out
    assert "second line" not in out and "Traceback" not in out


def test_doctor_reports_missing_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(doctor, "SHIPPED_MODEL", tmp_path / "nothing")
    assert doctor.run_doctor(verbose=False) == 1
    assert "build-assets" in capsys.readouterr().out
