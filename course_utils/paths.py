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
    """Folder of a shipped adapter (``spanish_sentiment`` or ``english_ner``); lesson 5 loads both."""
    if name not in ADAPTER_NAMES:
        raise ValueError(f"No shipped adapter named {name!r}: choose one of {', '.join(ADAPTER_NAMES)}.")
    path = SHIPPED_ADAPTERS / name
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"The shipped adapter {name!r} is missing at {path}: run `python -m course_utils build-assets`."
        )
    return path
