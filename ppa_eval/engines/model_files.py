"""What ppa-eval reads from a checkpoint (a model directory or a .gguf file) outside any engine:
its tokenizer and context window, which the tasks size their prompts in, and the dtype its weights
load in. Every engine, the tasks and fine-tuning read them here, so each reads them the same way.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from ppa_eval.engines import EngineError


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """--dtype as a torch dtype: auto is bfloat16 on a GPU, float32 on the CPU."""
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise EngineError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


@contextmanager
def reading(checkpoint: Path, what: str):
    """What transformers raises for a damaged or incomplete checkpoint, as one EngineError (the
    original stays its cause, shown with PPA_EVAL_DEBUG=1)."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, SafetensorError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(": ")
        raise EngineError(f"cannot load the {what} of {checkpoint} ({reason}); check that the checkpoint is complete "
                          "(config.json, weights, tokenizer files) or a valid .gguf file") from error


def pretrained_source(checkpoint: Path) -> dict:
    """from_pretrained arguments for a checkpoint directory or a .gguf file."""
    checkpoint = Path(checkpoint)
    if checkpoint.suffix == ".gguf":
        return {"pretrained_model_name_or_path": checkpoint.parent, "gguf_file": checkpoint.name}
    return {"pretrained_model_name_or_path": checkpoint}


def load_tokenizer(checkpoint: Path):
    """The checkpoint's tokenizer, padding on the left for batched generation."""
    from transformers import AutoTokenizer

    with reading(checkpoint, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(**pretrained_source(checkpoint))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def is_retention(checkpoint: Path) -> bool:
    """Whether the checkpoint is a power-retention model (Brumby, PowerCoder: ppa_eval.retention),
    by its config's model_type."""
    from ppa_eval.retention import MODEL_TYPES

    path = Path(checkpoint)
    try:
        return path.suffix != ".gguf" and json.loads((path / "config.json").read_text()).get("model_type") in MODEL_TYPES
    except (OSError, ValueError):
        return False  # reading the config properly says what is wrong with it


def model_config(checkpoint: Path):
    """The checkpoint's transformers config."""
    from transformers import AutoConfig

    if is_retention(checkpoint):
        from ppa_eval.retention import register

        register()
    with reading(checkpoint, "config"):
        return AutoConfig.from_pretrained(**pretrained_source(checkpoint))


def max_context(checkpoint: Path) -> int | None:
    """The longest sequence the checkpoint was built for (max_position_embeddings), if it says."""
    return getattr(model_config(checkpoint), "max_position_embeddings", None)


def head_dim(checkpoint: Path) -> int:
    """The size of the checkpoint's attention heads, which decides the GPU kernels that can run it."""
    config = model_config(checkpoint)
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def attention_shape(checkpoint: Path, dtype: str):
    """The checkpoint's attention as the cost model sees it (ppa_eval.patterns.cost): layers, heads,
    KV heads, head size, and the bytes of a value cached in `dtype` (a torch dtype name)."""
    from ppa_eval.patterns.cost import VALUE_BYTES, AttentionShape

    config = model_config(checkpoint)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    layer_types = getattr(text, "layers_block_type", None)  # NemotronH: only its attention layers count
    layers = layer_types.count("attention") if isinstance(layer_types, list) else text.num_hidden_layers
    return AttentionShape(layers=layers, heads=heads, kv_heads=getattr(text, "num_key_value_heads", None) or heads,
                          head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
                          value_bytes=VALUE_BYTES[dtype])
