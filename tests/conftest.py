import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter. Triton reads this once, when it is
# first imported (and torch, transformers' flex attention or a test module may import it), so it
# is set here, before any test module is collected.
if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(scope="session")
def embedded_checkpoint():
    """The embedded SmolLM2 model as a converted checkpoint (converted once per cache)."""
    from ppa_eval.engines.embedded import embedded_checkpoint

    return embedded_checkpoint()


@pytest.fixture(scope="session")
def tiny_nemotron(tmp_path_factory, embedded_checkpoint):
    """A random NemotronH checkpoint with Mamba-2, attention and MLP layers, small enough for CPU,
    with the embedded model's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, NemotronHConfig

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)

    config = NemotronHConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        layers_block_type=["mamba", "attention", "mlp", "mamba", "attention", "mlp"],
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        ssm_state_size=16, mamba_num_heads=8, mamba_head_dim=16, n_groups=2, chunk_size=32,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=1, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_nemotron")
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def make_tiny_checkpoint(tmp_path_factory, embedded_checkpoint):
    """make(directory, **config_extra): a random 2-layer Llama with the embedded tokenizer, saved at directory."""
    import json

    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    source = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(source)
    tokenizer.save_pretrained(source)

    def make(directory, **config_extra):
        import shutil

        shutil.copytree(source, directory)
        config_path = directory / "config.json"
        config_json = json.loads(config_path.read_text())
        config_json.update(config_extra)
        config_path.write_text(json.dumps(config_json))
        return directory

    return make
