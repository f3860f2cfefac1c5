from course_utils import versions


def test_pins_come_from_pyproject():
    pins = versions.pinned_versions()
    assert pins["torch"] == "2.13.0"
    assert pins["transformers"] == "5.23.0"
    assert pins["peft"] == "0.21.2"
    assert pins["nbval"] == "0.11.0"  # extras are read too


def test_installed_set_matches_the_pins():
    bad = [c for c in versions.check_versions() if not c.ok]
    assert bad == [], f"not the tested set: {bad}"


def test_version_check_flags_mismatch():
    assert not versions.VersionCheck("peft", "0.21.2", "0.20.0").ok
    assert not versions.VersionCheck("peft", "0.21.2", None).ok
    assert versions.VersionCheck("peft", "0.21.2", "0.21.2").ok


def test_installed_version_drops_local_label():
    assert versions.installed_version("torch") == "2.13.0"
    assert versions.installed_version("no-such-package-xyz") is None


def test_versions_summary(monkeypatch):
    text = versions.versions_summary()
    assert "transformers  5.23.0" in text and "matches the tested set" in text
    monkeypatch.setattr(versions, "installed_version", lambda n: "0.0.1" if n == "peft" else versions.pinned_versions()[n])
    assert "NOT the tested set: peft 0.0.1 (want 0.21.2)" in versions.versions_summary()
