"""Exercise 7 (lesson 7, versions, names, combining): given material and the judges of its questions."""
from __future__ import annotations

from functools import lru_cache

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ...models import load_base_model
from ...roundtrip import compare_logits, logits_of, sample_batch
from ...shipped import shipped_adapter
from ..evidence import Evidence
from .common import Question, adapter_folder, folder, peft_model, require, same_logits, tokenizer

# Two adapters concatenated (cat) compute their sum; float32 sums in another order stay this close.
COMBINED_ATOL = 1e-4


def renamed_colleague():
    """Exercise 7: a colleague's trained-looking adapter (rank 8 on c_attn and c_fc), seeded so the checker can
    build it again."""
    torch.manual_seed(7)
    model = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.05)   # stands in for training
    return model.eval()


@lru_cache(maxsize=1)
def _colleague_reference():
    return renamed_colleague()


def _q1(ev: Evidence) -> str:
    """Lesson 7: an adapter with renamed module paths, loaded so that its weights are really used."""
    model = peft_model(ev, "repaired")
    require(not ev.shares("repaired", "reference"), "`repaired` is the reference model itself (or shares its "
                                                    "tensors): load the adapter from its saved folder.")
    with model.disable_adapter():
        base_gap = compare_logits(model, load_base_model(), tokenizer()).max_abs_diff
    require(base_gap == 0.0, "`repaired`'s base model is not the course's base model.")
    return same_logits(_colleague_reference(), model, "`repaired`")


def _q2(ev: Evidence) -> str:
    """Lesson 7: the base model underneath ``sentiment``, given back without its LoRA layers."""
    info = ev.model_info("clean_base")
    require(info.get("class") not in ("PeftModel", "PeftModelForCausalLM"),
            "`clean_base` is still a PeftModel: get the model underneath.")
    lora = ev.lora_modules("clean_base")
    require(not lora, f"`clean_base` still has {len(lora)} LoRA layers (e.g. {lora[0] if lora else ''}): "
                      "they change what it computes.")
    require(ev.inside("clean_base", "sentiment"), "`clean_base` is not the model underneath `sentiment`: obtain it "
                                                  "from `sentiment`, not by loading again.")
    clean_base = ev.value("clean_base")
    require(isinstance(clean_base, torch.nn.Module), "`clean_base` should be a model.")
    result = compare_logits(load_base_model(), clean_base, tokenizer())
    require(result.ok, f"`clean_base` computes something else than the base model (max |difference| "
                       f"{result.max_abs_diff:.1e}): the adapter was merged in, not removed.")
    return f"no LoRA layers left, same logits as the base model (max |difference| {result.max_abs_diff:.1e})"


@lru_cache(maxsize=1)
def _both_logits():
    both = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    both.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    both.base_model.set_adapter(["es", "ner"])
    return logits_of(both, sample_batch(tokenizer()))


def _q3(ev: Evidence) -> str:
    """Lesson 7: one saved adapter that computes both shipped adapters at once, reloadable from its folder."""
    path = folder(ev, "combo_folder")
    adapter_folder(path)
    reloaded = PeftModel.from_pretrained(load_base_model(), str(path))
    gap = float((_both_logits() - logits_of(reloaded, sample_batch(tokenizer()))).abs().max())
    require(gap <= COMBINED_ATOL, f"the reloaded adapter does not compute both adapters together (max |logit "
                                  f"difference| {gap:.1e} from the two active at once, allowed {COMBINED_ATOL:g}).")
    return f"reloads from {path.name}/ and equals both adapters active (max |difference| {gap:.1e})"


QUESTIONS = (
    Question("ex07_q1", 2, ("repaired",), _q1, ("reference",)),
    Question("ex07_q2", 2, ("clean_base",), _q2, ("sentiment",)),
    Question("ex07_q3", 2, ("combo_folder",), _q3),
)
