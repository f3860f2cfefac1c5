"""course_utils.hub_cache: the cache it writes is the one huggingface_hub, transformers and peft read, offline.

Every check goes through the libraries' own resolution (``try_to_load_from_cache``, ``snapshot_download``,
``scan_cache_dir``, ``get_cached_repo_tree``, ``resolve_revision``, ``from_pretrained``), not through our paths.
"""
import hashlib
import json
import os
import shutil
import subprocess

import pytest
import torch
from huggingface_hub import (
    get_cached_repo_tree,
    resolve_revision,
    scan_cache_dir,
    snapshot_download,
    try_to_load_from_cache,
)
from huggingface_hub.errors import IncompleteSnapshotError, LocalEntryNotFoundError

from course_utils import add_commit, course_model, record_revisions, shipped_adapter
from course_utils.hub_cache import REVISIONS_FILE, read_ref, repo_folder

REPO = "course-org/tiny-gpt2-lora"
BASE_REPO = "course-org/tiny-gpt2"


@pytest.fixture()
def cache(tmp_path):
    """A cache with two commits of the adapter repo (v1 NER, v2 sentiment; main at v2) and one of the base."""
    root = tmp_path / "hub"
    v1 = add_commit(root, REPO, shipped_adapter("english_ner"), message="v1")
    v2 = add_commit(root, REPO, shipped_adapter("spanish_sentiment"), message="v2")
    base = add_commit(root, BASE_REPO, course_model())
    return root, v1, v2, base


def test_every_file_resolves_through_huggingface_hub_to_the_same_bytes(cache):
    root, v1, v2, _ = cache
    for commit, name in ((v1, "english_ner"), (v2, "spanish_sentiment"), ("main", "spanish_sentiment")):
        for file in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
            found = try_to_load_from_cache(REPO, file, cache_dir=root, revision=commit)
            assert isinstance(found, str), (commit, file, found)
            assert open(found, "rb").read() == (shipped_adapter(name) / file).read_bytes(), (commit, file)
    assert try_to_load_from_cache(REPO, "no_such_file.json", cache_dir=root, revision=v1) is None


def test_blobs_are_named_as_the_hub_names_them_and_snapshots_link_to_them(cache):
    root, v1, _, _ = cache
    snapshot = repo_folder(root, REPO) / "snapshots" / v1
    weights = snapshot / "adapter_model.safetensors"
    assert os.readlink(weights) == "../../blobs/" + hashlib.sha256(weights.read_bytes()).hexdigest()
    config = snapshot / "adapter_config.json"
    target = os.readlink(config)
    assert target.startswith("../../blobs/") and len(target.rsplit("/", 1)[1]) == 40
    if shutil.which("git"):  # git's own blob id for a file the Hub keeps in git (not LFS)
        git_id = subprocess.run(["git", "hash-object", str(config)], capture_output=True, text=True, check=True)
        assert target.rsplit("/", 1)[1] == git_id.stdout.strip()
    assert {p.name for p in (repo_folder(root, REPO) / "blobs").iterdir()} == {
        os.readlink(p).rsplit("/", 1)[1] for p in (repo_folder(root, REPO) / "snapshots").rglob("*") if p.is_symlink()}


def test_without_symlinks_the_snapshot_holds_copies_that_still_resolve(tmp_path, monkeypatch):
    def refuse(self, target):
        raise OSError("symlinks are not supported here")

    monkeypatch.setattr("pathlib.Path.symlink_to", refuse)
    commit = add_commit(tmp_path, REPO, shipped_adapter("english_ner"))
    found = try_to_load_from_cache(REPO, "adapter_model.safetensors", cache_dir=tmp_path, revision="main")
    assert found.endswith(f"{commit}/adapter_model.safetensors") and not os.path.islink(found)
    assert open(found, "rb").read() == (shipped_adapter("english_ner") / "adapter_model.safetensors").read_bytes()


def test_scan_cache_dir_reads_two_revisions_and_main_on_the_last(cache):
    root, v1, v2, base = cache
    info = scan_cache_dir(root)
    assert info.warnings == []
    repos = {r.repo_id: r for r in info.repos}
    assert set(repos) == {REPO, BASE_REPO}
    revisions = {r.commit_hash: r.refs for r in repos[REPO].revisions}
    assert revisions == {v1: frozenset(), v2: frozenset({"main"})}
    assert {r.commit_hash for r in repos[BASE_REPO].revisions} == {base}
    assert repos[REPO].nb_files == 4  # the two adapters share their README.md blob
    assert (root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_the_tree_listing_is_read_and_an_incomplete_snapshot_is_refused(cache):
    root, v1, _, _ = cache
    tree = {f.path: f.size for f in get_cached_repo_tree(REPO, revision=v1, cache_dir=root)}
    folder = shipped_adapter("english_ner")
    assert tree == {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    snapshot = snapshot_download(REPO, revision=v1, cache_dir=root, local_files_only=True)
    assert os.path.basename(snapshot) == v1
    os.unlink(os.path.join(snapshot, "README.md"))
    with pytest.raises(IncompleteSnapshotError, match="1 file"):
        snapshot_download(REPO, revision=v1, cache_dir=root, local_files_only=True)


def test_main_moves_with_each_commit_and_ref_none_leaves_it(cache, tmp_path):
    root, v1, v2, _ = cache
    assert resolve_revision(REPO, cache_dir=root, local_files_only=True).resolved == v2 == read_ref(root, REPO)
    v3 = add_commit(root, REPO, shipped_adapter("english_ner"), ref=None, message="v3")
    assert v3 not in (v1, v2) and read_ref(root, REPO) == v2
    with pytest.raises(LocalEntryNotFoundError):
        snapshot_download(REPO, revision="v9", cache_dir=root, local_files_only=True)


def test_commit_ids_are_deterministic_and_depend_on_the_parent(tmp_path):
    ner, sentiment = shipped_adapter("english_ner"), shipped_adapter("spanish_sentiment")
    first = add_commit(tmp_path / "a", REPO, ner)
    assert first == add_commit(tmp_path / "b", REPO, ner)
    assert add_commit(tmp_path / "a", REPO, sentiment) != add_commit(tmp_path / "c", REPO, sentiment)


def test_peft_and_transformers_load_each_commit_offline(cache, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from course_utils import compare_logits, load_base_model

    root, v1, v2, base = cache
    hub_base = AutoModelForCausalLM.from_pretrained(BASE_REPO, revision=base, cache_dir=root, dtype=torch.float32)
    assert compare_logits(load_base_model(), hub_base.eval(), tokenizer).ok
    for revision, name in ((v1, "english_ner"), ("main", "spanish_sentiment")):
        local = PeftModel.from_pretrained(load_base_model(), shipped_adapter(name))
        hub = PeftModel.from_pretrained(load_base_model(), REPO, revision=revision, cache_dir=root)
        assert compare_logits(local, hub, tokenizer).ok, revision
    with pytest.raises(ValueError, match="Can't find 'adapter_config.json'") as caught:
        PeftModel.from_pretrained(load_base_model(), REPO, revision="0" * 40, cache_dir=root)
    assert isinstance(caught.value.__context__, LocalEntryNotFoundError)


@pytest.mark.parametrize("folder, repo_id, ref, match", [
    ("missing", REPO, "main", "is not a folder"),
    ("empty", REPO, "main", "holds no files"),
    ("adapter", "no-slash", "main", "not a Hub model id"),
    ("adapter", "org/na--me", "main", "not a Hub model id"),
    ("adapter", "../escape/x", "main", "not a Hub model id"),
    ("adapter", REPO, "../../outside", "not a branch or tag name"),
    ("adapter", REPO, "", "not a branch or tag name"),
])
def test_bad_input_is_one_clear_line(tmp_path, folder, repo_id, ref, match):
    (tmp_path / "empty").mkdir()
    source = shipped_adapter("english_ner") if folder == "adapter" else tmp_path / folder
    with pytest.raises((ValueError, FileNotFoundError), match=match) as caught:
        add_commit(tmp_path / "hub", repo_id, source, ref=ref)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "hub").exists()


def test_record_revisions_writes_peft_field_and_the_json(tmp_path, cache):
    from peft import PeftConfig

    _, v1, _, base = cache
    folder = tmp_path / "adapter"
    shutil.copytree(shipped_adapter("english_ner"), folder)
    written = record_revisions(folder, BASE_REPO, base, REPO, v1)
    assert written == folder / REVISIONS_FILE
    assert json.loads(written.read_text()) == {"base_model": {"repo_id": BASE_REPO, "revision": base},
                                               "adapter": {"repo_id": REPO, "revision": v1}}
    config = PeftConfig.from_pretrained(str(folder))
    assert (config.base_model_name_or_path, config.revision) == (BASE_REPO, base)
    record_revisions(folder, BASE_REPO, base)
    assert set(json.loads(written.read_text())) == {"base_model"}


@pytest.mark.parametrize("args, error, match", [
    ((BASE_REPO, "main"), ValueError, "not a commit hash"),
    ((BASE_REPO, "a" * 40, REPO, "v1"), ValueError, "adapter revision 'v1' is not a commit hash"),
    (("tiny-gpt2", "a" * 40), ValueError, "not a Hub model id"),
])
def test_record_revisions_refuses_what_is_not_a_pin(tmp_path, args, error, match):
    folder = tmp_path / "adapter"
    shutil.copytree(shipped_adapter("english_ner"), folder)
    before = (folder / "adapter_config.json").read_text()
    with pytest.raises(error, match=match):
        record_revisions(folder, *args)
    assert (folder / "adapter_config.json").read_text() == before and not (folder / REVISIONS_FILE).exists()
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        record_revisions(tmp_path, BASE_REPO, "a" * 40)
