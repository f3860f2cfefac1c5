"""Write a peft LoRA folder as a GGUF LoRA for llama.cpp: ``python -m course_utils export-gguf FOLDER [--out FILE]``.

Taught in lesson 10 (section 5, "A GGUF LoRA"). llama.cpp's ``--lora`` reads a GGUF file, not
``adapter_model.safetensors``. This follows the convention of llama.cpp's ``convert_lora_to_gguf.py``, for the
course's GPT-2 architecture, with the ``gguf`` library:

- metadata: ``general.architecture = "gpt2"``, ``general.type = "adapter"``, ``adapter.type = "lora"`` and
  ``adapter.lora.alpha``; llama.cpp scales each pair by alpha / rank, the rank read from the tensor shapes;
- tensor names: the base tensor's GGUF name (``gguf.get_tensor_name_map(MODEL_ARCH.GPT2, ...)``:
  ``transformer.h.0.attn.c_attn`` is ``blk.0.attn_qkv``) plus ``.weight.lora_a`` and ``.weight.lora_b``;
- shapes: llama.cpp stores GPT-2's Conv1D weights transposed, as a Linear's ``(out, in)``, and wants
  ``lora_a`` as ``(r, in)`` and ``lora_b`` as ``(out, r)`` (GGUF lists the dimensions reversed:
  ``[in, r]`` and ``[r, out]``). peft's factors for a Conv1D layer already have these shapes: with
  ``fan_in_fan_out`` peft transposes only their product, ``get_delta_weight = (B @ A).T * alpha / r``. So A
  and B are written as they are, in float32, and ``B @ A * alpha / r`` is the transposed delta weight.

What GGUF LoRA cannot hold (DoRA, ``modules_to_save``, trainable tokens, rsLoRA, per-layer alphas, biases,
embeddings) gets a one-line error that says to merge instead.

Not tested against llama.cpp itself: llama-cpp-python has no wheel on PyPI for this platform (only a source
distribution, which pip compiles with a C++ toolchain), so the course does not install it. The file is checked
against ``convert_lora_to_gguf.py``'s conventions and, numerically, against peft (``tests/test_gguf_export.py``).
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import gguf
from safetensors.torch import load_file

from .adapter_format import WEIGHTS_FILE, split_lora_key
from .engines import EngineInputError, EngineReport, apply_rules, engine_rules, read_adapter

DEFAULT_NAME = "adapter_model.gguf"
GPT2_ARCHITECTURE = "GPT2LMHeadModel"
MERGE = "merge the adapter (merge_and_unload) and convert the merged model with llama.cpp's convert_hf_to_gguf.py"


def _refuse_config(adapter) -> None:
    """Raise ``EngineInputError`` if the config holds something a GGUF LoRA cannot."""
    report = apply_rules(adapter, engine_rules("llama.cpp"), EngineReport("", "", ""), skip=("gguf",))
    if report.findings:
        raise EngineInputError(report.findings[0])
    config = adapter.config
    if config.get("peft_type") != "LORA":
        raise EngineInputError(f"peft_type is {config.get('peft_type')!r}: GGUF holds LoRA adapters only; {MERGE}.")
    if config.get("alpha_pattern"):
        raise EngineInputError(f"alpha_pattern gives layers their own alpha; GGUF LoRA has one adapter.lora.alpha: {MERGE}.")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise EngineInputError(f"the adapter trains biases; GGUF LoRA holds only lora_a and lora_b: {MERGE}.")
    if adapter.architecture not in (None, GPT2_ARCHITECTURE):
        raise EngineInputError(f"the base model is {adapter.architecture}; export-gguf writes GPT-2 tensor names "
                               "only: use llama.cpp's convert_lora_to_gguf.py --base BASE_FOLDER.")


def _factors(folder: Path) -> dict[str, dict[str, object]]:
    """``{module path: {"A": array, "B": array}}`` in float32, from the safetensors file."""
    pairs: dict[str, dict[str, object]] = {}
    for key, tensor in load_file(folder / WEIGHTS_FILE).items():
        parts = split_lora_key(key)
        if parts is None or "lora_embedding" in key or tensor.dim() != 2:
            raise EngineInputError(f"{key} is not a linear layer's LoRA factor; GGUF LoRA from export-gguf holds "
                                   f"only those: {MERGE}.")
        module, ab = parts
        pairs.setdefault(module, {})[ab] = tensor.float().numpy()
    if not pairs:
        raise EngineInputError(f"{folder / WEIGHTS_FILE} holds no LoRA factors: re-save the trained adapter.")
    return pairs


def gguf_names(modules) -> dict[str, str]:
    """``{module path: GGUF base tensor name}`` for GPT-2 (``transformer.h.0.attn.c_attn`` -> ``blk.0.attn_qkv.weight``)."""
    layers = [int(m) for name in modules for m in re.findall(r"\.(\d+)\.", f".{name}.")]
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, max(layers, default=0) + 1)
    names = {}
    for module in modules:
        name = name_map.get_name(module.removeprefix("base_model.model."))
        if name is None or not name.startswith("blk."):
            raise EngineInputError(f"{module} has no LoRA-able GPT-2 tensor in llama.cpp (only the blocks' c_attn, "
                                   f"c_proj and c_fc): {MERGE}.")
        names[module] = f"{name}.weight"
    return names


def _write(path: Path, alpha: float, tensors: list[tuple[str, object]]) -> None:
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    for name, array in tensors:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def export_gguf(folder: str | Path, out: str | Path | None = None, base: str | None = None) -> Path:
    """Write the LoRA adapter in ``folder`` as a GGUF LoRA (``out``, default ``FOLDER/adapter_model.gguf``);
    ``EngineInputError`` with one line for a folder llama.cpp cannot take as a LoRA."""
    adapter = read_adapter(folder, base)
    _refuse_config(adapter)
    pairs = _factors(adapter.folder)
    names = gguf_names(pairs)
    tensors = []
    for module, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise EngineInputError(f"{module} has lora_{''.join(pair)} but not both factors: re-save the adapter.")
        tensors += [(f"{names[module]}.lora_a", pair["A"]), (f"{names[module]}.lora_b", pair["B"])]
    out = Path(out) if out is not None else adapter.folder / DEFAULT_NAME
    if out.is_dir() or not out.parent.is_dir():
        raise EngineInputError(f"cannot write {out}: give --out a .gguf file name in an existing folder.")
    partial = out.with_name(out.name + ".partial")
    try:
        _write(partial, float(adapter.config["lora_alpha"]), tensors)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def run_export(folder: str, out: str | None = None) -> int:
    """The CLI's ``export-gguf``: write the file and say how to load it; 0 written, 2 refused."""
    try:
        path = export_gguf(folder, out)
    except EngineInputError as e:
        print(f"export-gguf: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: a GGUF LoRA for llama.cpp (llama-cli -m BASE.gguf --lora {path.name}).")
    return 0
