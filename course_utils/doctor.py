"""``python -m course_utils doctor``: is this machine ready for the course, and do adapters really reload?

It checks the versions, the device and the shipped model, then saves a LoRA adapter with non-trivial
weights and reloads it through every load path, comparing logits with the model that was saved.
A path that loads without error but gives other logits (transformers 5.0-5.5's silent drop of LoRA
weights, for example) is caught by that measurement. Defined for lesson 1; lesson 3 explains it.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from .assets import SHIPPED_MODEL
from .lesson_setup import quiet_libraries
from .messages import one_line
from .placement import device_name
from .roundtrip import compare_logits, logits_of, sample_batch
from .versions import check_versions, installed_version


@dataclass
class PathResult:
    name: str
    ok: bool
    detail: str


def _peft_from_pretrained(base_loader, folder):
    return PeftModel.from_pretrained(base_loader(), folder)


def _peft_load_adapter(base_loader, folder):
    model = get_peft_model(base_loader(), LoraConfig(r=8, target_modules=["c_attn"]), adapter_name="placeholder")
    model.load_adapter(folder, adapter_name="doctor_check")
    model.set_adapter("doctor_check")
    return model


def _transformers_load_adapter(base_loader, folder):
    model = base_loader()
    model.load_adapter(str(folder), adapter_name="doctor_check")
    return model


def _auto_from_adapter_folder(base_loader, folder):
    return AutoModelForCausalLM.from_pretrained(str(folder)).eval()


LOAD_PATHS = {
    "PeftModel.from_pretrained(base, folder)": _peft_from_pretrained,
    "PeftModel.load_adapter(folder, adapter_name=...)": _peft_load_adapter,
    "transformers model.load_adapter(folder)": _transformers_load_adapter,
    "AutoModelForCausalLM.from_pretrained(folder)": _auto_from_adapter_folder,
}


def roundtrip_all_paths(model_dir: str, atol: float = 1e-5) -> tuple[list[PathResult], float]:
    """Save an adapter trained-looking (random, non-zero LoRA weights) and reload it through every path.

    Returns the per-path results and how much the adapter changes the base's logits (so a path that
    silently drops the weights cannot pass by accident).
    """
    def base_loader():
        return AutoModelForCausalLM.from_pretrained(model_dir).eval()

    tok = AutoTokenizer.from_pretrained(model_dir)
    batch = sample_batch(tok)
    torch.manual_seed(0)
    saved = get_peft_model(base_loader(), LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"],
                                                     init_lora_weights=False)).eval()
    adapter_effect = float((logits_of(saved, batch) - logits_of(base_loader(), batch)).abs().max())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "doctor_adapter"
        saved.save_pretrained(folder)
        for name, load in LOAD_PATHS.items():
            try:
                check = compare_logits(saved, load(base_loader, folder), tok, atol=atol, batch=batch)
                detail = str(check)
                if not check.ok:
                    detail += " -- loaded without error but the LoRA weights were not applied"
                results.append(PathResult(name, check.ok, detail))
            except Exception as exc:  # the doctor reports every failure as one line
                results.append(PathResult(name, False, "raised " + one_line(exc, limit=300)))
    return results, adapter_effect


def run_doctor(verbose: bool = True) -> int:
    """Print the report; return 0 when everything passed, 1 otherwise. Never raises."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    start = time.perf_counter()
    problems: list[str] = []
    say = print if verbose else (lambda *a, **k: None)
    try:

        quiet_libraries()
        say(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
        checks = check_versions()
        for name in ("torch", "transformers", "peft"):
            say(f"{name:<13} {installed_version(name) or 'missing'}")
        bad = [c for c in checks if not c.ok]
        if bad:
            problems += [f"{c.name} is {c.installed or 'not installed'}, the course is tested with {c.pinned}: "
                         f"run `make lab` to install the tested set" for c in bad]
        else:
            say(f"pinned set    all {len(checks)} packages match")
        say(f"device        {device_name()}")
    except Exception as exc:
        problems.append(f"could not read the installed versions ({one_line(exc, limit=300)}): run `make lab`")

    try:
        model = AutoModelForCausalLM.from_pretrained(str(SHIPPED_MODEL))
        say(f"model         shipped tiny GPT-2 loads offline ({sum(p.numel() for p in model.parameters()):,} parameters)")
    except Exception as exc:
        problems.append(f"the shipped model does not load from {SHIPPED_MODEL} ({one_line(exc, limit=300)}): "
                        "run `python -m course_utils build-assets`")
    else:
        try:
            results, effect = roundtrip_all_paths(str(SHIPPED_MODEL))
            say(f"round trip    save a LoRA adapter (it moves the logits by up to {effect:.2f}), reload, compare:")
            for r in results:
                say(f"  {'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
            if effect < 1e-3:
                problems.append("the test adapter does not change the logits, so the round trip proves nothing")

            problems += [f"{r.name} does not reproduce the saved model with transformers {transformers.__version__} "
                         f"and peft {peft.__version__}: {r.detail}" for r in results if not r.ok]
        except Exception as exc:
            problems.append(f"the round trip could not run ({one_line(exc, limit=300)})")
    took = time.perf_counter() - start
    if problems:
        print(f"doctor: {len(problems)} problem(s) found in {took:.1f} s:")
        for p in problems:
            print(f"  - {p}")
        return 1
    say(f"doctor: all checks passed in {took:.1f} s")
    return 0
