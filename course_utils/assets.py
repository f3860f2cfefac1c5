"""Where the course's shipped assets live, which model the course runs on, and its cache folder.

Defined in lesson 1 (``course_model()``); every lesson reaches it through ``load_base_model``. The second
shipped base, ``course_model("llama")``, has Llama's architecture: it is the course's check that what it
teaches holds beyond GPT-2's quirks.
"""
from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_MODEL = ASSETS / "tiny-gpt2"
SHIPPED_LLAMA = ASSETS / "tiny-llama"
SHIPPED_ADAPTERS = ASSETS / "adapters"
# The shipped bases by architecture; the shipped adapters fit only "gpt2".
SHIPPED_ARCHITECTURES = {"gpt2": SHIPPED_MODEL, "llama": SHIPPED_LLAMA}
ADAPTER_NAMES = ("spanish_sentiment", "english_ner")
COURSE_MODEL_ENV = "COURSE_MODEL"


def course_model(arch: str | None = None) -> str:
    """The model the course runs on: ``$COURSE_MODEL`` if set (a Hub id or a local folder), else the shipped one.

    ``arch`` (``"gpt2"`` or ``"llama"``) asks for that shipped base instead, whatever ``$COURSE_MODEL`` says.
    """
    if arch is not None:
        if arch not in SHIPPED_ARCHITECTURES:
            raise ValueError(f"No shipped model for arch={arch!r}: choose one of {', '.join(map(repr, SHIPPED_ARCHITECTURES))}.")
        return str(SHIPPED_ARCHITECTURES[arch])
    override = os.environ.get(COURSE_MODEL_ENV, "").strip()
    return override or str(SHIPPED_MODEL)


def is_shipped_model(model: str) -> bool:
    """True when ``model`` (a folder or a Hub id) is the shipped tiny model."""
    try:
        return Path(model).expanduser().resolve() == SHIPPED_MODEL.resolve()
    except OSError:
        return False


def cache_dir() -> Path:
    """``$PEFT_COURSE_CACHE`` or ``$XDG_CACHE_HOME/peft-course`` (default ``~/.cache/peft-course``)."""
    if os.environ.get("PEFT_COURSE_CACHE"):
        return Path(os.environ["PEFT_COURSE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "peft-course"


# The LoRA configuration of the shipped adapters (``make assets`` trains them with it; stand-ins reuse it).
SHIPPED_LORA = dict(r=16, lora_alpha=32, target_modules=["c_attn", "c_proj", "c_fc"], lora_dropout=0.0)
# The tracked shipped adapters record this placeholder in base_model_name_or_path (the model's folder differs on every
# machine); shipped_adapter() returns a copy that names course_model() instead (see shipped.local_copy).
SHIPPED_BASE_ID = "course-tiny-gpt2"
