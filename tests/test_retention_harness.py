"""A retention checkpoint through the same harness as a PPA one: its config names its spec, the
transformers engine runs it (and refuses what does not fit), evaluate writes the same run format
with the architecture recorded, and the report keeps it off the PPA p axis."""

import json

import pytest
import torch

from ppa_eval.checkpoints import resolve_pattern
from ppa_eval.engines import EngineError
from ppa_eval.engines.hf import attention_kernel
from ppa_eval.engines.vllm_engine import VLLMEngine
from ppa_eval.patterns import PatternError, PowerRetention, parse_spec


@pytest.fixture(scope="session")
def tiny_brumby(tmp_path_factory, embedded_checkpoint):
    """A random 2-layer Brumby with the embedded model's tokenizer; chunk 16, so that decoding folds."""
    from transformers import AutoTokenizer

    from ppa_eval.retention.models import BrumbyConfig, BrumbyForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    config = BrumbyConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                          chunk_size=16, prefill_chunk_size=16, switch_over_seq_len=32,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_brumby")
    BrumbyForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_retention_checkpoint_names_its_spec(tiny_brumby):
    assert resolve_pattern(tiny_brumby) == PowerRetention(2, chunk=16, prefill=16, switch=32)
    spec = "retention:degree=2,chunk=16,prefill=16,switch=32"
    assert resolve_pattern(tiny_brumby).spec() == spec and parse_spec(spec) == resolve_pattern(tiny_brumby)
    assert parse_spec("retention") == PowerRetention(2, 0, 0, 0)  # the exact path: PowerCoder's published default


def test_degree_is_not_ppa_p():
    with pytest.raises(PatternError, match="degree 4"):
        parse_spec("retention:degree=4")
    with pytest.raises(PatternError, match="takes degree"):
        parse_spec("retention:p=2")


def test_the_engines_refuse_what_does_not_fit(tiny_brumby, embedded_checkpoint):
    retention = resolve_pattern(tiny_brumby)
    assert attention_kernel(tiny_brumby, retention, "cpu") == "retention-reference"
    with pytest.raises(EngineError, match="power-retention model"):
        attention_kernel(tiny_brumby, parse_spec("ppa:p=3/4,w=64"), "cpu")
    with pytest.raises(EngineError, match="only on retention checkpoints"):
        attention_kernel(embedded_checkpoint, retention, "cpu")
    with pytest.raises(EngineError, match="--attn-kernel sdpa does not apply"):
        attention_kernel(tiny_brumby, retention, "cpu", "sdpa")
    with pytest.raises(EngineError, match="--engine hf"):
        VLLMEngine.attention_kernel(None, "cpu", retention, tiny_brumby)


@pytest.mark.slow
def test_evaluate_and_report_treat_it_as_one_more_architecture(tiny_brumby, tmp_path):
    from ppa_eval.evaluate import evaluate
    from ppa_eval.engines import make_engine
    from ppa_eval.engines.model_files import attention_shape
    from ppa_eval.report import collect, render_tables
    from ppa_eval.settings import Settings

    settings = Settings(tasks=["gsm8k", "passkey"], limit=2, context_lengths=[512], max_new_tokens=6,
                        chat_template="none", batch_size=2)
    pattern = resolve_pattern(tiny_brumby)
    run = evaluate(tiny_brumby, "brumby", pattern, settings, tmp_path, make_engine)
    assert run.name == "brumby__retention_degree2_chunk16_prefill16_switch32"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["attention"] == pattern.spec() and manifest["attn_kernel"] == "retention-reference"
    assert (manifest["architecture"], manifest["degree"], manifest["chunk_size"], manifest["switch_over_seq_len"]) \
        == ("power-retention", 2, 16, 32)
    assert "power" not in manifest  # PPA's p is not retention's degree
    samples = [json.loads(line) for line in (run / "passkey" / "samples.jsonl").read_text().splitlines()]
    assert {s["context_length"] for s in samples} == {512} and all(s["prompt_tokens"] > 400 for s in samples)
    metrics = json.loads((run / "passkey" / "metrics.json").read_text())
    assert metrics["cost_length"] > 400 and metrics["architecture"] == "power-retention"
    assert metrics["cache_bytes"] == pattern.cache_bytes(attention_shape(tiny_brumby, "float32"), 10**6)  # constant
    frame = collect(tmp_path)
    assert set(frame["series"]) == {"retention"} and not frame["p_curve"].any()
    table = render_tables(frame)
    assert pattern.spec() in table and "passkey MFLOP/token" in table and "passkey cache MiB" in table
