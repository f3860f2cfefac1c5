"""Where the course's shipped assets live, and which model the course uses.

Defined in lesson 1 (``course_model()``); every lesson calls it through ``load_base_model``.
"""
from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
SHIPPED_MODEL = ASSETS / "tiny-gpt2"
SHIPPED_ADAPTERS = ASSETS / "adapters"
ADAPTER_NAMES = ("spanish_sentiment", "english_ner")
COURSE_MODEL_ENV = "COURSE_MODEL"


def course_model() -> str:
    """The model the course runs on: ``$COURSE_MODEL`` if set (a Hub id or a local folder), else the shipped one."""
    override = os.environ.get(COURSE_MODEL_ENV, "").strip()
    if override:
        return override
    return str(SHIPPED_MODEL)


def shipped_adapter(name: str) -> Path:
    """Folder of a shipped adapter (``spanish_sentiment`` or ``english_ner``); lesson 5 loads both.

    When ``$COURSE_MODEL`` names another model, the shipped adapters do not fit it: an adapter of the same
    name trained briefly for that model is returned instead (``full_size.adapter_for_model``).
    """
    if name not in ADAPTER_NAMES:
        raise ValueError(f"No shipped adapter named {name!r}: choose one of {', '.join(ADAPTER_NAMES)}.")
    model = course_model()
    if model != str(SHIPPED_MODEL):
        from .full_size import adapter_for_model, is_shipped_model

        if not is_shipped_model(model):
            return adapter_for_model(name, model)
    path = SHIPPED_ADAPTERS / name
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"The shipped adapter {name!r} is missing at {path}: run `python -m course_utils build-assets`."
        )
    return path
