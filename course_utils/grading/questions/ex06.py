"""Exercise 6 (lesson 6, new tokens: what the adapter must carry): given material and the judge of its question.
The given folder takes its shape from the learner's seed and its weights from ``secrets``: the folder, snapshotted by
``record_given`` as the given cell ends, is the only copy, so a model that holds those weights was loaded from it."""
from __future__ import annotations

import random
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from transformers import AutoTokenizer

from ...learner import learner_seed
from ...models import load_base_model, load_tokenizer
from ..evidence import Evidence
from .common import (
    Question,
    active,
    given_snapshot,
    own_rng,
    peft_model,
    quiet_save,
    require,
    same_logits,
    secret_rng,
    train_looking,
)

TAGS = ("ent", "per", "loc", "org", "date", "misc")


# ============================================================================ Q1: an adapter trained with new tokens
def entity_tokens(seed: int) -> list[str]:
    """Exercise 6 Q1: the tokens the colleague added (one to three pairs of tags, from the learner's seed)."""
    rng = random.Random(seed * 7 + 6)
    return [t for tag in rng.sample(TAGS, rng.randint(1, 3)) for t in (f"<{tag}>", f"</{tag}>")]


def entity_colleague(target, learner=None) -> Path:
    """Exercise 6 Q1: a colleague's adapter trained with added tokens (``wte`` saved whole), saved with their
    tokenizer into ``target``. Its weights are drawn from ``secrets``: this folder is their only copy."""
    target = Path(target)
    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": entity_tokens(learner_seed(learner))})
    with secret_rng():
        base = load_base_model()
        base.resize_token_embeddings(len(tok), mean_resizing=False)  # random new rows: only this folder has them
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True,
                                                modules_to_save=["wte"]))
        train_looking(model)
    quiet_save(model, target)
    tok.save_pretrained(str(target))
    return target


def _entity_reference(path: Path):
    """The checker's own load of the snapshot: base resized to the shipped tokenizer, adapter loaded."""
    tok = AutoTokenizer.from_pretrained(str(path))
    base = load_base_model()
    base.resize_token_embeddings(len(tok), mean_resizing=False)   # the folder's rows replace the new ones
    return PeftModel.from_pretrained(base, str(path)).eval(), tok


def _same_adapter(model, adapter: str, reference) -> bool:
    """Whether ``model``'s adapter and embedding hold exactly the reference's tensors (the names of adapters aside)."""
    mine = get_peft_model_state_dict(model, adapter_name=adapter, save_embedding_layers=False)
    theirs = get_peft_model_state_dict(reference, save_embedding_layers=False)
    return set(mine) == set(theirs) and all(torch.equal(mine[k].float(), theirs[k].float()) for k in theirs) and \
        torch.equal(model.get_output_embeddings().weight.float(), reference.get_output_embeddings().weight.float())


def _q1(ev: Evidence) -> str:
    """Lesson 6: an adapter trained with added tokens, loaded from its folder onto a base resized to the
    tokenizer shipped with it (the folder holds the only copy of its weights)."""
    path = given_snapshot(ev, "ex06_given_tokens", "shared")
    reference, tok = _entity_reference(path)
    added = tok.convert_ids_to_tokens(list(range(len(load_tokenizer()), len(tok))))
    require(added == entity_tokens(ev.seed), "the folder `shared` was made for "
            "another learner: run the notebook from its first cell.")
    model = peft_model(ev, "fixed")
    rows = model.get_input_embeddings().weight.shape[0]
    require(rows == len(tok), f"`fixed` has an embedding of {rows} rows; the tokenizer shipped in `shared` has "
                              f"{len(tok)} tokens (lesson 6: resize the base first).")
    adapter = active(model, "fixed")
    require(_same_adapter(model, adapter, reference), "the active adapter of `fixed` does not hold the weights saved "
                                                      "in `shared` (with the trained embedding rows): load it from "
                                                      "that folder.")
    text = " ".join(f"{t} Maria" for t in added) + " works in Paris."
    batch = dict(tok([text], return_tensors="pt"))
    return f"{rows}-token vocabulary, " + same_logits(reference, model, "`fixed`", batch=batch)



QUESTIONS = (
    Question("ex06_q1", 2, ("fixed",), own_rng(_q1)),
)
