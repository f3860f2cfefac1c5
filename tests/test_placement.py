import pytest
import torch
from torch import nn

from course_utils.placement import (
    PlacementRow,
    assert_single_device,
    device_name,
    placement_report,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 3)  # 12 + 3 elements, "base"
        self.lora_A = nn.Linear(4, 2, bias=False)  # 8 elements, "lora"


def test_groups_by_device_dtype_and_kind():
    m = Tiny()
    m.lora_A.to(torch.bfloat16)
    report = placement_report(m)
    assert report.rows == (
        PlacementRow("cpu", "bfloat16", "lora", 1, 8),
        PlacementRow("cpu", "float32", "base", 2, 15),
    )
    assert report.devices == ["cpu"]
    assert report.dtypes == {"base": ["float32"], "lora": ["bfloat16"]}


def test_table_lists_every_group():
    m = Tiny()
    m.layer.to("meta")
    lines = str(placement_report(m)).splitlines()
    assert lines[0].split() == ["device", "dtype", "kind", "tensors", "elements"]
    assert [ln.split() for ln in lines[1:]] == [["cpu", "float32", "lora", "1", "8"],
                                                ["meta", "float32", "base", "2", "15"]]


def test_peft_model_report(base_model):
    from peft import PeftModel

    from course_utils import shipped_adapter

    n_base = sum(p.numel() for p in base_model.parameters())
    model = PeftModel.from_pretrained(base_model, shipped_adapter("spanish_sentiment"))
    report = placement_report(model)
    kinds = {r.kind: r for r in report.rows}
    assert kinds["base"].elements == n_base
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert kinds["lora"].tensors == len(lora) > 0
    model.to(torch.bfloat16)
    assert placement_report(model).dtypes == {"base": ["bfloat16"], "lora": ["bfloat16"]}


def test_single_device_returns_it():
    assert assert_single_device(Tiny()) == "cpu"


def test_stray_parameters_are_named_in_one_line():
    m = Tiny()
    m.lora_A.to("meta")
    with pytest.raises(RuntimeError) as info:
        assert_single_device(m)
    msg = str(info.value)
    assert "\n" not in msg
    assert "lora_A.weight (meta)" in msg and "not on cpu" in msg
    assert "layer.weight" not in msg


def test_many_strays_are_summarised():
    m = nn.Sequential(*[nn.Linear(2, 2) for _ in range(6)])
    for layer in list(m)[:4]:
        layer.to("meta")  # 8 stray tensors, 4 on cpu... the majority is meta
    with pytest.raises(RuntimeError, match=r"4 parameter\(s\) are not on meta.*and 1 more"):
        assert_single_device(m)


def test_bad_input_is_one_clear_error():
    with pytest.raises(TypeError, match="needs a torch model"):
        placement_report("gpt2")
    with pytest.raises(ValueError, match="no parameters"):
        assert_single_device(nn.ReLU())


def test_device_name():
    assert device_name() in {"cuda", "mps", "cpu"}
