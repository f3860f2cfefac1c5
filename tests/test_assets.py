"""The shipped model and adapters: present, small, offline, and still good at their tasks."""
import json

import pytest

from course_utils import paths, tasks
from course_utils.build_assets import SPLITS


def test_assets_are_small():
    total = sum(f.stat().st_size for f in paths.ASSETS.rglob("*") if f.is_file())
    print(f"shipped assets: {total / 1e6:.2f} MB")
    assert total < 8e6


@pytest.mark.parametrize("task", paths.ADAPTER_NAMES)
def test_adapter_heldout_accuracy(task, tokenizer):
    from peft import PeftModel

    from course_utils import load_base_model
    from course_utils.generation import task_accuracy

    model = PeftModel.from_pretrained(load_base_model(), paths.shipped_adapter(task))
    _, heldout = tasks.task_splits(task, **SPLITS)
    acc = task_accuracy(model, tokenizer, heldout)
    print(f"{task}: held-out exact-match accuracy {acc:.1%} on {len(heldout)} examples")
    assert acc >= 0.9


def test_switching_adapters_changes_the_output(tokenizer):
    from peft import PeftModel

    from course_utils import load_base_model
    from course_utils.generation import complete

    model = PeftModel.from_pretrained(load_base_model(), paths.shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    model.load_adapter(paths.shipped_adapter("english_ner"), adapter_name="english_ner")
    prompt = tasks.ner_prompt("Maria works for Acme in Paris.")
    outs = {}
    for name in paths.ADAPTER_NAMES:
        model.set_adapter(name)
        outs[name] = complete(model, tokenizer, prompt)
    with model.disable_adapter():
        outs["base"] = complete(model, tokenizer, prompt)
    print(outs)
    assert outs["english_ner"].strip() == "Maria (PER), Acme (ORG), Paris (LOC)"
    assert len(set(outs.values())) == 3


def test_build_report_matches_assets():
    report = json.loads((paths.ASSETS / "build_report.json").read_text())
    assert all(report[f"{t}_heldout_accuracy"] >= 0.9 for t in paths.ADAPTER_NAMES)
    cfg = json.loads((paths.shipped_adapter("english_ner") / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["base_model_name_or_path"] == "course-tiny-gpt2"
