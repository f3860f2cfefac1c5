"""How ``diagnose`` words a finding, and where each finding says to read (``Reading``).

A finding names the problem and the evidence ``diagnose`` found (which file, which names or shapes disagree),
then where to read: a section of a lesson and a page of the peft or transformers documentation. It never gives
the code of the fix: the lesson section shows it, and the learner writes it (hints point, they do not answer).
Defined in lesson 3 (``diagnose``); the checks are in ``diagnosis``, ``diagnosis_files`` and ``diagnosis_base``,
and ``tests/test_diagnosis.py`` checks that each reading names a real heading of its lesson.
"""
from __future__ import annotations

from dataclasses import dataclass

PEFT_DOCS = "https://huggingface.co/docs/peft/"
TRANSFORMERS_DOCS = "https://huggingface.co/docs/transformers/"

CHECKPOINT_DOCS = PEFT_DOCS + "developer_guides/checkpoint"
LORA_CONFIG_DOCS = PEFT_DOCS + "package_reference/lora"
LORA_GUIDE_DOCS = PEFT_DOCS + "developer_guides/lora"
PEFT_MODEL_DOCS = PEFT_DOCS + "package_reference/peft_model"
TROUBLESHOOTING_DOCS = PEFT_DOCS + "developer_guides/troubleshooting"
DEEPSPEED_DOCS = PEFT_DOCS + "accelerate/deepspeed"
TRANSFORMERS_PEFT_DOCS = TRANSFORMERS_DOCS + "peft"


@dataclass(frozen=True)
class Reading:
    """Where to read about a finding: lesson ``lesson``, section ``section`` (its heading ``title``, without the
    number and backticks), optionally the ``part`` (a ``###`` heading) inside it, and a documentation page."""

    lesson: int
    section: int
    title: str
    docs: str
    part: str = ""

    def __str__(self) -> str:
        part = f', part "{self.part}"' if self.part else ""
        return f'read lesson {self.lesson}, section {self.section} "{self.title}"{part}, and {self.docs}'


# Lesson 1: what a save writes.
SAVED_FILES = Reading(1, 4, "Save it, and look at what was written", CHECKPOINT_DOCS)
CONFIG_FILE = Reading(1, 5, "adapter_config.json, field by field", CHECKPOINT_DOCS)
CONFIG_SETTINGS = Reading(1, 5, "adapter_config.json, field by field", LORA_CONFIG_DOCS)
WEIGHTS_FILE = Reading(1, 6, "Inside the weights file, without loading it", CHECKPOINT_DOCS)
RANK = Reading(1, 6, "Inside the weights file, without loading it", LORA_CONFIG_DOCS)
PICKLE = Reading(1, 7, "safe_serialization=False: the pickled .bin, and why not to use it", CHECKPOINT_DOCS)
# Lesson 2: the base an adapter records, which transformers loads when given the adapter folder.
RECORDED_BASE = Reading(2, 4, "Through transformers: model.load_adapter and from_pretrained(adapter_folder)",
                        TRANSFORMERS_PEFT_DOCS, "When the recorded base is not on this machine")
BASE_REVISION = Reading(2, 4, "Through transformers: model.load_adapter and from_pretrained(adapter_folder)",
                        CHECKPOINT_DOCS, "When the recorded base is not on this machine")
# Lesson 3: adapter-only saves, merged models, the error messages, diagnose itself.
ADAPTER_ONLY = Reading(3, 1, "save_pretrained on a PeftModel saves only the adapter", LORA_GUIDE_DOCS)
ERRORS = Reading(3, 6, "The error messages, and what each one means", PEFT_MODEL_DOCS)
OTHER_BASE = Reading(3, 6, "The error messages, and what each one means", TROUBLESHOOTING_DOCS + "#incorrectly-loaded-model")
TARGETS = Reading(3, 6, "The error messages, and what each one means", LORA_CONFIG_DOCS)
DIAGNOSE = Reading(3, 7, "Diagnose a folder before you load it", CHECKPOINT_DOCS)
BASE_MODEL = Reading(3, 7, "Diagnose a folder before you load it", TRANSFORMERS_PEFT_DOCS)
# Lesson 5: several adapters in one folder.
MULTI_ADAPTER = Reading(5, 4, "What save_pretrained writes for two named adapters", PEFT_MODEL_DOCS)
# Lesson 6: new tokens.
NEW_TOKENS = Reading(6, 3, "The symptom: size mismatch on a fresh base", TROUBLESHOOTING_DOCS + "#extending-the-vocabulary")
TRAINABLE_TOKENS = Reading(6, 4, "A lighter way: trainable_token_indices",
                           TROUBLESHOOTING_DOCS + "#extending-the-vocabulary")
# Lesson 7: classification heads.
HEADS = Reading(7, 1, "Classification heads", TROUBLESHOOTING_DOCS + "#randomly-initialized-layers")
# Lesson 8: version drift.
NEWER_PEFT = Reading(8, 1, "An adapter saved by a newer peft", TROUBLESHOOTING_DOCS + "#version-mismatch")
RENAMED = Reading(8, 2, "Module paths renamed by a transformers refactor", PEFT_MODEL_DOCS)
# Lesson 9: shipping.
ZERO3 = Reading(9, 5, "Empty adapters and quantized bases", DEEPSPEED_DOCS, "The empty adapter (DeepSpeed ZeRO-3)")
# Lesson 11: merging and compiling in practice.
COMPILED = Reading(11, 6, "torch.compile and the _orig_mod. prefix", PEFT_MODEL_DOCS)

def finding(text: str, read: Reading) -> str:
    """One line: the problem and its evidence (``text``), then where to read."""
    return " ".join(f"{str(text).rstrip().rstrip('.')}; {read}.".split())
