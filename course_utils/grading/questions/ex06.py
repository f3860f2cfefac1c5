"""Exercise 6 (lesson 6, new tokens, classification heads, Trainer checkpoints): given material and judges."""
from __future__ import annotations

import tempfile
from functools import lru_cache

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import GPT2ForSequenceClassification

from ...assets import course_model
from ...models import load_base_model, load_tokenizer
from ..evidence import Evidence
from .common import Question, adapter_folder, folder, notebook_type, peft_model, require, same_logits, type_name

NEW_TOKENS = ["<ent>", "</ent>"]


def entity_colleague():
    """Exercise 6: a colleague's adapter trained with two added tokens (``wte`` saved whole); ``(model, tokenizer)``.

    Seeded: the checker builds the same model again as its reference.
    """
    torch.manual_seed(6)  # before the resize: its new rows are drawn at random
    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": NEW_TOKENS})
    base = load_base_model()
    base.resize_token_embeddings(len(tok))
    model = get_peft_model(base, LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                            modules_to_save=["wte"], init_lora_weights=False))
    with torch.no_grad():
        model.base_model.model.transformer.wte.modules_to_save["default"].weight[-2:] += 0.5  # "trained" rows
    return model.eval(), tok


@lru_cache(maxsize=1)
def _colleague_reference():
    return entity_colleague()[0]


def _no_reference_tensors(ev: Evidence, name: str) -> None:
    require(not ev.shares(name, "reference"), f"`{name}` is the reference model itself (or shares its tensors): "
                                              "load the adapter from its saved folder.")


def _q1(ev: Evidence) -> str:
    """Lesson 6: an adapter trained with added tokens, loaded onto a base resized to its tokenizer."""
    model = peft_model(ev, "fixed")
    reference = _colleague_reference()
    rows = model.get_input_embeddings().weight.shape[0]
    want = reference.get_input_embeddings().weight.shape[0]
    require(rows == want, f"`fixed` has an embedding of {rows} rows, the adapter was trained with {want}.")
    _no_reference_tensors(ev, "fixed")
    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": NEW_TOKENS})
    tagged = dict(tok(["<ent> Maria </ent> works in <ent> Paris </ent>."], return_tensors="pt"))
    return f"{rows}-token vocabulary, " + same_logits(reference, model, "`fixed`", batch=tagged)


def _classifier(seed: int):
    torch.manual_seed(seed)  # a different random head on every build, as a fresh process would draw
    tok = load_tokenizer()
    return GPT2ForSequenceClassification.from_pretrained(course_model(), num_labels=2,
                                                         pad_token_id=tok.pad_token_id).eval()


def _q2(ev: Evidence) -> str:
    """Lesson 6: a LoRA config for GPT2ForSequenceClassification whose saved adapter carries its trained head."""
    config = ev.value("config")
    notebook_type(config, "config")
    require(isinstance(config, LoraConfig), f"`config` is a {type_name(config)}, not a LoraConfig.")
    require(isinstance(config.r, int) and config.r == 8, f"`config` has rank {config.r!r}; the task asks for rank 8.")
    task = config.task_type
    require(task is None or (isinstance(task, str) and task == TaskType.SEQ_CLS),
            f"`config` has task_type {task!r}, which does not fit a sequence classifier.")
    model = get_peft_model(_classifier(0), config)
    where = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)})
    require(where == ["c_attn"], f"`config` puts LoRA on {', '.join(where) or 'no module'}; the task asks for "
                                 "LoRA on c_attn only.")
    head = [n for n, p in model.named_parameters() if p.requires_grad and "score" in n]
    require(head, "with this config the classification head (`score`) is frozen: it would keep its random start "
                  "and would not be saved.")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # stand-in for training: move every trainable weight
    x = dict(load_tokenizer()(["Reseña: La comida fue excelente.\nSentimiento:"], return_tensors="pt"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = PeftModel.from_pretrained(_classifier(1), tmp)
        with torch.no_grad():
            gap = float((model(**x).logits - back(**x).logits).abs().max())
    require(gap < 1e-5, f"after save and reload the predictions change (max |logit difference| {gap:.1e}): "
                        "the head's trained weights are not in the saved adapter.")
    return f"head trained and saved; reload reproduces the logits (max |difference| {gap:.1e})"


def _q3(ev: Evidence) -> str:
    """Lesson 6: a Trainer checkpoint loaded to continue training, not wrapped again with get_peft_model."""
    model = peft_model(ev, "continued")
    checkpoint = folder(ev, "checkpoint")
    adapter_folder(checkpoint)
    _no_reference_tensors(ev, "continued")
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    n_lora = sum(p.requires_grad for p in lora)
    require(n_lora == len(lora) and n_lora > 0, f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors of "
                                                "`continued` are frozen: it could not continue training.")
    n_base = sum(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    require(n_base == 0, f"{n_base} base-model parameters of `continued` require grad: training would change the "
                         "base.")
    reference = PeftModel.from_pretrained(load_base_model(), str(checkpoint))
    return f"{n_lora} LoRA tensors trainable, " + same_logits(reference, model, "`continued`")


QUESTIONS = (
    Question("ex06_q1", 2, ("fixed",), _q1, ("reference",)),
    Question("ex06_q2", 2, ("config",), _q2),
    Question("ex06_q3", 2, ("continued",), _q3, ("checkpoint", "reference")),
)
