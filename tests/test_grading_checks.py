"""Every exercise check: the solution passes, the untouched stub fails, and plausible wrong answers fail
with feedback that says what is wrong. Real objects built from the shipped tiny model."""
from __future__ import annotations

import re

import pytest
import torch

from course_utils import load_base_model, shipped_adapter
from course_utils.grading.checks import (
    CHECKS,
    NER_SENTENCE,
    CheckFailed,
    check,
    stub_message,
)


def fails(check_id: str, pattern: str, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(check_id, **kwargs)
    message = str(info.value)
    assert message.startswith(f"✗ {check_id}: ") and "\n" not in message
    assert re.search(pattern, message), message
    return message


def passes(check_id: str, capsys, **kwargs) -> None:
    check(check_id, **kwargs)
    out = capsys.readouterr().out
    assert out.startswith(f"✓ {check_id}: ") and out.count("\n") == 1, out


def lora(r=8, targets=("c_attn", "c_fc"), init=False, name="default", seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=init)
    return get_peft_model(load_base_model(), config, adapter_name=name)


def reload(folder, **kwargs):
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking adapter and the folder it was saved to (exercises 2 and 4 give the learner this)."""
    folder = tmp_path_factory.mktemp("saved") / "adapter"
    model = lora()
    model.save_pretrained(folder)
    return model, folder


def test_registry_matches_the_solution_notebooks():
    import nbformat

    from course_utils.grading.student_copies import (
        check_id_of,
        is_check,
        nbgrader_meta,
        solution_paths,
    )

    found = {}
    for path in solution_paths():
        for cell in nbformat.read(path, as_version=4).cells:
            if is_check(cell):
                found[check_id_of(cell)] = nbgrader_meta(cell)["points"]
    assert found == {k: c.points for k, c in CHECKS.items()}


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_untouched_stub_fails_with_the_stored_message(check_id):
    spec = CHECKS[check_id]
    kwargs = {name: None for name in spec.answers}
    with pytest.raises(CheckFailed) as info:
        check(check_id, **kwargs)
    assert str(info.value) == stub_message(check_id)
    assert info.value._render_traceback_() == [stub_message(check_id)]


def test_unknown_check_and_missing_argument():
    fails("ex99_q1", "no such check")
    fails("ex01_q1", r"pass your answer as model=")


def test_object_that_breaks_a_check_gives_one_line():
    fails("ex01_q3", "should be a list", files="README.md", folder=".")
    fails("ex02_q1", "not a PeftModel", reloaded="model", reference=None)


# ---------------------------------------------------------------------------------------- exercise 1
def test_ex01_q1(capsys):
    passes("ex01_q1", capsys, model=lora(r=4, targets=("c_attn", "c_proj")))
    fails("ex01_q1", "rank r=8", model=lora(r=8, targets=("c_attn", "c_proj")))
    fails("ex01_q1", r"LoRA sits on \['c_attn'\]", model=lora(r=4, targets=("c_attn",)))
    fails("ex01_q1", "does not change the output", model=lora(r=4, targets=("c_attn", "c_proj"), init=True))
    fails("ex01_q1", "not a PeftModel", model=load_base_model())
    unfrozen = lora(r=4, targets=("c_attn", "c_proj"))
    for p in unfrozen.parameters():
        p.requires_grad = True
    fails("ex01_q1", "base stays frozen", model=unfrozen)


def test_ex01_q2_q3_q4(tmp_path, capsys):
    model = lora(r=4, targets=("c_attn", "c_proj"))
    folder = tmp_path / "ex01_adapter"
    fails("ex01_q2", "nothing was saved", folder=folder, model=model)
    model.save_pretrained(folder)
    passes("ex01_q2", capsys, folder=folder, model=model)
    passes("ex01_q2", capsys, folder=str(folder), model=model)
    fails("ex01_q2", "different logits", folder=folder, model=lora(r=4, targets=("c_attn", "c_proj"), seed=1))
    bin_folder = tmp_path / "as_bin"
    model.save_pretrained(bin_folder, safe_serialization=False)
    fails("ex01_q2", r"no adapter_model.safetensors .*adapter_model.bin", folder=bin_folder, model=model)
    full = tmp_path / "full"
    model.get_base_model().save_pretrained(full)
    fails("ex01_q2", "full model", folder=full, model=model)
    named = tmp_path / "named"
    lora(r=4, targets=("c_attn", "c_proj"), name="mine").save_pretrained(named)
    fails("ex01_q2", r"subfolder \(mine/\)", folder=named, model=model)

    files = ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    passes("ex01_q3", capsys, files=files, folder=folder)
    passes("ex01_q3", capsys, files=tuple(reversed(files)), folder=folder)
    fails("ex01_q3", "not in the folder: adapter_model.bin", files=["adapter_config.json", "adapter_model.bin"],
          folder=folder)
    fails("ex01_q3", "1 of the 3 files .* missing", files=files[1:], folder=folder)
    fails("ex01_q3", "names a file twice", files=files + files[:1], folder=folder)
    fails("ex01_q3", "should be a list", files="adapter_model.safetensors", folder=folder)

    passes("ex01_q4", capsys, n_tensors=24, folder=folder)  # 4 layers x (c_attn, attn.c_proj, mlp.c_proj) x (A, B)
    fails("ex01_q4", "too few", n_tensors=12, folder=folder)
    fails("ex01_q4", "too many", n_tensors=sum(1 for _ in model.parameters()), folder=folder)
    fails("ex01_q4", "whole number", n_tensors="24", folder=folder)


# ---------------------------------------------------------------------------------------- exercise 2
@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")
def test_ex02_q1(saved, capsys):
    model, folder = saved
    passes("ex02_q1", capsys, reloaded=reload(folder), reference=model)
    fails("ex02_q1", "very model you saved", reloaded=model, reference=model)
    fails("ex02_q1", "different logits", reloaded=lora(init=True), reference=model)
    fails("ex02_q1", "not a PeftModel", reloaded=load_base_model(), reference=model)
    from peft import PeftModel

    own = lora(seed=2)  # not the shared fixture: wrapping its base again would change it for later tests
    own.save_pretrained(folder.parent / "own")
    fails("ex02_q1", "shares weights", reloaded=PeftModel.from_pretrained(own.get_base_model(), str(folder.parent / "own"),
                                                                           adapter_name="again"), reference=own)


def test_ex02_q2(saved, capsys):
    from peft import LoraConfig, get_peft_model

    model, folder = saved

    def multi():
        return get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))

    good = multi()
    good.load_adapter(folder, adapter_name="reloaded")
    good.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=good, reference=model)
    inactive = multi()
    inactive.load_adapter(folder, adapter_name="reloaded")
    fails("ex02_q2", "active adapter is 'default'.*does not activate", multi=inactive, reference=model)
    other_name = multi()
    other_name.load_adapter(folder, adapter_name="mine")
    fails("ex02_q2", r"no adapter named 'reloaded' \(it has \['default', 'mine'\]\)", multi=other_name,
          reference=model)
    fails("ex02_q2", "no adapter named 'reloaded'", multi=multi(), reference=model)
    wrong_weights = multi()
    wrong_weights.add_adapter("reloaded", LoraConfig(r=8, target_modules=["c_attn", "c_fc"], init_lora_weights=False))
    wrong_weights.set_adapter("reloaded")
    fails("ex02_q2", "different logits", multi=wrong_weights, reference=model)


def test_ex02_q3(saved, capsys):
    model, folder = saved
    passes("ex02_q3", capsys, trainable=reload(folder, is_trainable=True), reference=model)
    fails("ex02_q3", "0 LoRA parameters require grad", trainable=reload(folder), reference=model)
    everything = reload(folder, is_trainable=True)
    for p in everything.parameters():
        p.requires_grad = True
    fails("ex02_q3", "base-model parameters require grad", trainable=everything, reference=model)
    fails("ex02_q3", "different logits", trainable=lora(seed=3), reference=model)
    fails("ex02_q3", "very model you saved", trainable=model, reference=model)


# ---------------------------------------------------------------------------------------- exercise 3
def test_ex03_q1(tmp_path, capsys):
    colleague = lora(targets=("c_attn",), name="sentiment")
    colleague.save_pretrained(tmp_path)
    passes("ex03_q1", capsys, fixed=reload(tmp_path / "sentiment"), reference=colleague)
    passes("ex03_q1", capsys, fixed=reload(tmp_path, subfolder="sentiment"), reference=colleague)
    fails("ex03_q1", "different logits", fixed=lora(targets=("c_attn",), seed=1), reference=colleague)
    fails("ex03_q1", "not a PeftModel", fixed=load_base_model(), reference=colleague)
    fails("ex03_q1", "very model you saved", fixed=colleague, reference=colleague)


def test_ex03_q2(capsys):
    from peft import LoraConfig

    passes("ex03_q2", capsys, config=LoraConfig(r=8, target_modules=["c_attn"]))
    fails("ex03_q2", r"still fails .*q_proj", config=LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    fails("ex03_q2", r"LoRA lands on \['c_attn', 'c_proj'\]", config=LoraConfig(r=8, target_modules=["c_attn", "c_proj"]))
    fails("ex03_q2", "1 of the 4 layers", config=LoraConfig(r=8, target_modules=["h.0.attn.c_attn"]))
    fails("ex03_q2", "not a LoraConfig", config={"target_modules": ["c_attn"]})


def test_ex03_q3(capsys):
    from peft import PeftModel

    def two():
        model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"), adapter_name="english_ner")
        model.load_adapter(shipped_adapter("spanish_sentiment"), adapter_name="spanish_sentiment")
        return model

    good = two()
    good.set_adapter("spanish_sentiment")
    passes("ex03_q3", capsys, spanish_model=good)
    fails("ex03_q3", "active adapter is 'english_ner'", spanish_model=two())
    alone = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    fails("ex03_q3", "keep english_ner loaded", spanish_model=alone)
    swapped = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"), adapter_name="english_ner")
    swapped.load_adapter(shipped_adapter("english_ner"), adapter_name="spanish_sentiment")
    swapped.set_adapter("spanish_sentiment")
    fails("ex03_q3", "different logits", spanish_model=swapped)


# ---------------------------------------------------------------------------------------- exercise 4
def test_ex04_q1(saved, capsys):
    from peft import PeftModel

    model, folder = saved
    good = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), str(folder))
    passes("ex04_q1", capsys, bf16_model=good, reference=model)
    fails("ex04_q1", r"base parameters are \{'float32'", bf16_model=reload(folder), reference=model)
    fails("ex04_q1", r"base parameters are \{'float16'",
          bf16_model=PeftModel.from_pretrained(load_base_model(dtype=torch.float16), str(folder)), reference=model)
    fresh = lora(seed=5)
    fresh.get_base_model().to(torch.bfloat16)
    for n, p in fresh.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()
    fails("ex04_q1", "LoRA weights differ from the saved ones", bf16_model=fresh, reference=model)


def _broken(folder):
    model = reload(folder)
    model.base_model.model.transformer.h[2].mlp.c_fc.base_layer.to(torch.bfloat16)
    return model


def test_ex04_q2(saved, capsys):
    model, folder = saved
    passes("ex04_q2", capsys, fixed=_broken(folder).to(torch.float32), reference=model)
    passes("ex04_q2", capsys, fixed=_broken(folder).float(), reference=model)
    fails("ex04_q2", r"\{'float32': 66, 'bfloat16': 2\}", fixed=_broken(folder), reference=model)
    fails("ex04_q2", r"\{'bfloat16': 68\}", fixed=_broken(folder).to(torch.bfloat16), reference=model)
    fails("ex04_q2", "not a PeftModel", fixed=load_base_model(), reference=model)
    fails("ex04_q2", "LoRA layers are not the ones saved", fixed=lora(targets=("c_attn",)), reference=model)


def test_ex04_q3(saved, capsys):
    from course_utils import device_name

    model, folder = saved
    best = device_name()
    passes("ex04_q3", capsys, placed=reload(folder).to(best), device=best, reference=model)
    split = reload(folder)
    split.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].to("meta")
    fails("ex04_q3", r"sit on 2 device\(s\).*'meta': 1", placed=split, device=best, reference=model)
    wrong = "cuda" if best != "cuda" else "cpu"
    fails("ex04_q3", f"device '{wrong}' is not the best one", placed=reload(folder), device=wrong, reference=model)
    fails("ex04_q3", "not a PeftModel", placed=load_base_model(), device=best, reference=model)


# ---------------------------------------------------------------------------------------- exercise 5
def _both(first="spanish_sentiment", second="english_ner", names=None):
    from peft import PeftModel

    names = names or (first, second)
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter(first), adapter_name=names[0])
    model.load_adapter(shipped_adapter(second), adapter_name=names[1])
    return model


def test_ex05_q1(capsys):
    passes("ex05_q1", capsys, model=_both())
    passes("ex05_q1", capsys, model=_both("english_ner", "spanish_sentiment"))
    from peft import PeftModel

    one = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                    adapter_name="spanish_sentiment")
    fails("ex05_q1", "no adapter named 'english_ner'", model=one)
    fails("ex05_q1", "no adapter named 'spanish_sentiment'", model=_both(names=("default", "english_ner")))
    fails("ex05_q1", "does not hold the weights of the shipped english_ner",
          model=_both("spanish_sentiment", "spanish_sentiment", names=("spanish_sentiment", "english_ner")))


def test_ex05_q2(capsys):
    from course_utils import complete, load_tokenizer
    from course_utils.tasks import ner_prompt, sentiment_prompt

    tok = load_tokenizer()
    model = _both()
    model.set_adapter("english_ner")
    out = complete(model, tok, ner_prompt(NER_SENTENCE))
    passes("ex05_q2", capsys, ner_output=out, model=model)
    fails("ex05_q2", "not what english_ner writes", ner_output=complete(model, tok, sentiment_prompt("La comida fue excelente.")),
          model=model)
    with model.disable_adapter():
        base_out = complete(model, tok, ner_prompt(NER_SENTENCE))
    fails("ex05_q2", "not what english_ner writes", ner_output=base_out, model=model)
    spanish = _both()
    fails("ex05_q2", "active adapter is 'spanish_sentiment'",
          ner_output=complete(spanish, tok, ner_prompt(NER_SENTENCE)), model=spanish)
    fails("ex05_q2", "should be the generated text", ner_output=[out], model=model)


def test_ex05_q3(tmp_path, capsys):
    model = _both()
    root = tmp_path / "both"
    fails("ex05_q3", "nothing was saved", saved_root=root)
    model.save_pretrained(root)
    passes("ex05_q3", capsys, saved_root=root)
    only_active = tmp_path / "only"
    model.save_pretrained(only_active, selected_adapters=["spanish_sentiment"])
    fails("ex05_q3", "no english_ner/adapter_config.json", saved_root=only_active)
    tampered = tmp_path / "tampered"
    model.save_pretrained(tampered)
    (tampered / "english_ner" / "adapter_model.safetensors").write_bytes(
        (root / "spanish_sentiment" / "adapter_model.safetensors").read_bytes())
    fails("ex05_q3", "english_ner adapter reloaded from english_ner/ gives different logits", saved_root=tampered)
    no_weights = tmp_path / "noweights"
    model.save_pretrained(no_weights)
    (no_weights / "spanish_sentiment" / "adapter_model.safetensors").unlink()
    fails("ex05_q3", "no adapter_model.safetensors", saved_root=no_weights)
