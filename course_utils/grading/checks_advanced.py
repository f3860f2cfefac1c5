"""Self-checks of exercises 6 and 7 (lessons 6 and 7), registered into ``checks.CHECKS``.

``checks.py`` calls ``register_advanced_checks(_register, _Wrong)`` once; this module imports nothing from it
(no import cycle). Like every check, each one tests what the learner's objects and files do, never how the
code is spelled, and fails with one line that says what is still wrong without giving the answer away.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import GPT2ForSequenceClassification

from ..adapter_format import CONFIG_FILE, PICKLE_WEIGHTS_FILE, WEIGHTS_FILE
from ..assets import course_model
from ..files import list_files
from ..models import load_base_model, load_tokenizer
from ..roundtrip import compare_logits, logits_of, sample_batch
from ..shipped import shipped_adapter

_FAIL: list = [AssertionError]  # replaced by checks._Wrong when registered, so check() shows the one-line message
# Two adapters concatenated (cat) compute their sum; float32 sums in another order stay this close.
COMBINED_ATOL = 1e-4


def _require(condition, message: str) -> None:
    if not condition:
        raise _FAIL[0](message)


def _peft(obj, name: str):
    _require(isinstance(obj, PeftModel), f"`{name}` is a {type(obj).__name__}, not a PeftModel "
                                         "(a base model with a LoRA adapter).")
    return obj


def _same(reference, candidate, what: str, atol: float = 1e-5, batch=None) -> str:
    result = compare_logits(reference, candidate, load_tokenizer(), atol=atol, batch=batch)
    _require(result.ok, f"{what} gives different logits (max |difference| {result.max_abs_diff:.1e}, "
                        f"allowed {atol:g}): its weights are not the ones expected.")
    return f"logits match the reference (max |difference| {result.max_abs_diff:.1e})"


def _not_the_reference(reference, candidate, name: str) -> None:
    """Fail when the learner hands back the reference model (or one sharing its LoRA tensors) instead of a load."""
    ours = {p.data_ptr() for n, p in reference.named_parameters() if "lora_" in n or "modules_to_save" in n}
    shared = [n for n, p in candidate.named_parameters() if p.data_ptr() in ours]
    _require(candidate is not reference and not shared, f"`{name}` is the reference model itself (or shares its "
                                                        "adapter tensors): load the adapter from its saved folder.")


def _trainable_lora(model, name: str) -> int:
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    n_lora = sum(p.requires_grad for p in lora)
    _require(n_lora == len(lora) and n_lora > 0, f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors of `{name}` "
                                                 "are frozen: it could not continue training.")
    n_base = sum(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    _require(n_base == 0, f"{n_base} base-model parameters of `{name}` require grad: training would change the base.")
    return n_lora


def _adapter_root(path, name: str) -> Path:
    _require(isinstance(path, (str, Path)), f"`{name}` should be a folder path, not a {type(path).__name__}.")
    folder = Path(path)
    _require(folder.is_dir(), f"nothing was saved at {str(path)!r}: run the cell that saves, and pass that folder.")
    files = list_files(folder)
    nested = sorted({f.split("/")[0] for f in files if f.endswith("/" + CONFIG_FILE)})
    _require(CONFIG_FILE in files or not nested, f"the adapter sits in a subfolder ({', '.join(nested)}/), not at "
                                                 "the folder's root: pass the folder that holds adapter_config.json.")
    weights = WEIGHTS_FILE in files or PICKLE_WEIGHTS_FILE in files
    _require(CONFIG_FILE in files and weights, f"{folder} holds no saved adapter "
                                                             f"({', '.join(files) or 'nothing'}).")
    return folder


def _classifier(seed: int):
    torch.manual_seed(seed)  # a different random head on every build, as a fresh process would draw
    tok = load_tokenizer()
    return GPT2ForSequenceClassification.from_pretrained(course_model(), num_labels=2,
                                                         pad_token_id=tok.pad_token_id).eval()


# ------------------------------------------------------------------------------- exercise 6
def _ex06_q1(fixed, reference) -> str:
    """Lesson 6: an adapter trained with added tokens, loaded onto a base resized to its tokenizer."""
    model = _peft(fixed, "fixed")
    rows = model.get_input_embeddings().weight.shape[0]
    want = reference.get_input_embeddings().weight.shape[0]
    _require(rows == want, f"`fixed` has an embedding of {rows} rows, the adapter was trained with {want}.")
    _not_the_reference(reference, model, "fixed")
    tok = load_tokenizer()
    tagged = dict(tok(["<ent> Maria </ent> works in <ent> Paris </ent>."], return_tensors="pt"))
    return f"{rows}-token vocabulary, " + _same(reference, model, "`fixed`", batch=tagged)


def _ex06_q2(config) -> str:
    """Lesson 6: a LoRA config for GPT2ForSequenceClassification whose saved adapter carries its trained head."""
    _require(isinstance(config, LoraConfig), f"`config` is a {type(config).__name__}, not a LoraConfig.")
    _require(isinstance(config.r, int) and config.r == 8, f"`config` has rank {config.r!r}; the task asks for rank 8.")
    task = config.task_type
    _require(task is None or (isinstance(task, str) and task == TaskType.SEQ_CLS),
             f"`config` has task_type {task!r}, which does not fit a sequence classifier.")
    model = get_peft_model(_classifier(0), config)
    where = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)})
    _require(where == ["c_attn"], f"`config` puts LoRA on {', '.join(where) or 'no module'}; the task asks for "
                                  "LoRA on c_attn only.")
    head = [n for n, p in model.named_parameters() if p.requires_grad and "score" in n]
    _require(head, "with this config the classification head (`score`) is frozen: it would keep its random start "
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
    _require(gap < 1e-5, f"after save and reload the predictions change (max |logit difference| {gap:.1e}): "
                         "the head's trained weights are not in the saved adapter.")
    return f"head trained and saved; reload reproduces the logits (max |difference| {gap:.1e})"


def _ex06_q3(continued, reference) -> str:
    """Lesson 6: a Trainer checkpoint loaded to continue training, not wrapped again with get_peft_model."""
    model = _peft(continued, "continued")
    _not_the_reference(reference, model, "continued")
    n = _trainable_lora(model, "continued")
    return f"{n} LoRA tensors trainable, " + _same(reference, model, "`continued`")


# ------------------------------------------------------------------------------- exercise 7
def _ex07_q1(repaired, reference) -> str:
    """Lesson 7: an adapter with renamed module paths, loaded so that its weights are really used."""
    model = _peft(repaired, "repaired")
    _not_the_reference(reference, model, "repaired")
    with model.disable_adapter():
        base_gap = compare_logits(model, load_base_model(), load_tokenizer()).max_abs_diff
    _require(base_gap == 0.0, "`repaired`'s base model is not the course's base model.")
    return _same(reference, model, "`repaired`")


def _ex07_q2(clean_base, sentiment) -> str:
    """Lesson 7: the base model underneath ``sentiment``, given back without its LoRA layers."""
    _require(not isinstance(clean_base, PeftModel), "`clean_base` is still a PeftModel: get the model underneath.")
    lora = [n for n, m in clean_base.named_modules() if isinstance(m, LoraLayer)]
    _require(not lora, f"`clean_base` still has {len(lora)} LoRA layers (e.g. {lora[0] if lora else ''}): "
                       "they change what it computes.")
    _require(clean_base is _peft(sentiment, "sentiment").base_model.model,
             "`clean_base` is not the model underneath `sentiment`: obtain it from `sentiment`, not by loading again.")
    result = compare_logits(load_base_model(), clean_base, load_tokenizer())
    _require(result.ok, f"`clean_base` computes something else than the base model (max |difference| "
                        f"{result.max_abs_diff:.1e}): the adapter was merged in, not removed.")
    return f"no LoRA layers left, same logits as the base model (max |difference| {result.max_abs_diff:.1e})"


def _ex07_q3(combo_folder) -> str:
    """Lesson 7: one saved adapter that computes both shipped adapters at once, reloadable from its folder."""
    folder = _adapter_root(combo_folder, "combo_folder")
    reloaded = PeftModel.from_pretrained(load_base_model(), str(folder))
    both = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    both.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    both.base_model.set_adapter(["es", "ner"])
    batch = sample_batch(load_tokenizer())
    gap = float((logits_of(both, batch) - logits_of(reloaded, batch)).abs().max())
    _require(gap <= COMBINED_ATOL, f"the reloaded adapter does not compute both adapters together (max |logit "
                                   f"difference| {gap:.1e} from the two active at once, allowed {COMBINED_ATOL:g}).")
    return f"reloads from {folder.name}/ and equals both adapters active (max |difference| {gap:.1e})"


ADVANCED = [("ex06_q1", 2, ("fixed",), _ex06_q1), ("ex06_q2", 2, ("config",), _ex06_q2),
            ("ex06_q3", 2, ("continued",), _ex06_q3), ("ex07_q1", 2, ("repaired",), _ex07_q1),
            ("ex07_q2", 2, ("clean_base",), _ex07_q2), ("ex07_q3", 2, ("combo_folder",), _ex07_q3)]


def register_advanced_checks(register, wrong: type[Exception]) -> None:
    """Add the checks of exercises 6 and 7 with ``checks._register``; fail them with ``checks._Wrong``."""
    _FAIL[0] = wrong
    for check_id, points, answers, func in ADVANCED:
        register(check_id, points, answers)(func)
