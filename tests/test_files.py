import struct

import pytest
from safetensors.torch import save_file

from course_utils.adapter_format import read_safetensors_header
from course_utils.files import list_files, tensor_table
from course_utils.shipped import shipped_adapter


def test_list_files_of_a_shipped_adapter():
    files = list_files(shipped_adapter("english_ner"))
    assert set(files) == {"README.md", "adapter_config.json", "adapter_model.safetensors"}
    assert all(size > 0 for size in files.values())


def test_list_files_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        list_files(tmp_path / "nope")


def test_header_matches_tensors(tmp_path):
    import torch

    f = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)}, f)
    assert tensor_table(f) == [("a", "F32", (2, 3)), ("b", "BF16", (4,))]


@pytest.mark.parametrize("data, message", [
    (b"", "too short"),
    (struct.pack("<Q", 10**12) + b"{}", "claims a"),
    (struct.pack("<Q", 4) + b"\xff\xfe\x00\x01", "not JSON"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 47) + b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'[:47], "not JSON"),
])
def test_corrupt_files_give_one_line(tmp_path, data, message):
    f = tmp_path / "bad.safetensors"
    f.write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        read_safetensors_header(f)
    assert "\n" not in str(e.value)


def test_truncated_data_is_detected(tmp_path):
    import torch

    f = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(100)}, f)
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated"):
        read_safetensors_header(f)
