"""The perplexity task: per-bucket negative log-likelihoods equal a brute-force masked forward of the
stock model, bytes are the text's own (counted from the tokenizer's character offsets), the
bootstrap interval is the exact one where it can be enumerated, and evaluate -> report gives the
table and the plot over p."""

import json
import math

import pytest
import torch

from ppa_eval.evaluate import evaluate
from ppa_eval.engines import make_engine
from ppa_eval.patterns import parse_spec
from ppa_eval.perplexity import PerplexityError, bucket_bounds, documents
from ppa_eval.report import collect, write_report
from ppa_eval.runs import RunError, read_metrics
from ppa_eval.settings import Settings
from ppa_eval.stats import bootstrap_ratio_ci
from ppa_eval.tasks import TASKS
from reference import brute_scores

LENGTHS = [16, 32, 64]
BOOKS = TASKS["perplexity"].docs.data_set.read("test")


@pytest.fixture(scope="module")
def tiny(make_tiny_checkpoint, tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("perplexity") / "tiny")


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """Two documents under full attention and under PPA at p = 1/2, w = 8, through `evaluate`."""
    out = tmp_path_factory.mktemp("runs")
    settings = Settings(tasks=["perplexity"], context_lengths=LENGTHS, limit=2, dtype="float32")
    dirs = {spec: evaluate(tiny, "tiny", parse_spec(spec), settings, out, make_engine)
            for spec in ("ppa:p=1,w=8", "ppa:p=1/2,w=8")}
    return out, dirs


def samples(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "perplexity" / "samples.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["ppa:p=1,w=8", "ppa:p=1/2,w=8"])
def test_bucket_scores_equal_the_brute_force_masked_forward(tiny, runs, spec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stock = AutoModelForCausalLM.from_pretrained(tiny, attn_implementation="eager", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    brute_spec = "full" if spec == "ppa:p=1,w=8" else "ppa:p=1/2,w=8"
    records = samples(runs[1][spec])
    assert [r["doc_id"] for r in records] == [book["book"] for book in BOOKS[:2]]  # the first two books
    nll_total = tokens_total = 0.0
    for record, book in zip(records, BOOKS):
        encoded = tokenizer(book["text"], add_special_tokens=False, return_offsets_mapping=True)
        ids, ends = encoded["input_ids"][:64], [end for _, end in encoded["offset_mapping"][:64]]
        logprobs = brute_scores(stock, ids, brute_spec)[0]
        for bucket, (low, high) in zip(record["buckets"], [(1, 16), (16, 32), (32, 64)]):
            # positions low+1..high: tokens low..high-1, predicted by logprobs[low-1..high-2]
            assert bucket["length"] == high and bucket["tokens"] == high - low
            assert bucket["nll"] == pytest.approx(-float(logprobs[low - 1 : high - 1].sum()), rel=1e-5)
            assert bucket["bytes"] == len(book["text"][ends[low - 1] : ends[high - 1]].encode())
            if high == 64:
                nll_total, tokens_total = nll_total + bucket["nll"], tokens_total + bucket["tokens"]
    metrics = json.loads((runs[1][spec] / "perplexity" / "metrics.json").read_text())
    assert metrics["kind"] == "scored" and metrics["n"] == 2
    assert metrics["by_length"]["64"]["token_perplexity"] == pytest.approx(math.exp(nll_total / tokens_total))


@pytest.mark.slow
def test_report_writes_the_perplexity_table_and_the_plot_over_p(runs):
    out, _ = runs
    table, written = write_report(out)
    names = {path.name for path in written}
    assert {"table.md", "table_perplexity.csv", "perplexity.png"} <= names and "table.csv" not in names
    assert "64 bits/byte [95% CI]" in table and "ppa:p=1/2,w=8" in table
    cells = collect(out, "scored")
    assert sorted(cells["length"].unique()) == LENGTHS and collect(out).empty
    row = cells[(cells["attention"] == "ppa:p=1,w=8") & (cells["length"] == 64)].iloc[0]
    assert row.bpb_low <= row.bits_per_byte <= row.bpb_high
    assert row.bits_per_byte == pytest.approx(math.log2(row.token_perplexity) * row.tokens / row.bytes)


@pytest.mark.slow
def test_a_finished_run_is_not_scored_again_and_a_grown_limit_scores_only_new_documents(tiny, runs, monkeypatch):
    out, dirs = runs
    run_dir = dirs["ppa:p=1,w=8"]
    before = samples(run_dir)
    settings = Settings(tasks=["perplexity"], context_lengths=LENGTHS, limit=3, dtype="float32")
    scored = []

    def engine(checkpoint, pattern, settings):
        real = make_engine(checkpoint, pattern, settings)
        original = real.score_tokens
        real.score_tokens = lambda rows: scored.append(len(rows)) or original(rows)
        return real

    evaluate(tiny, "tiny", parse_spec("ppa:p=1,w=8"), settings, out, engine)
    after = samples(run_dir)
    assert scored == [1] and [r["doc_id"] for r in after[:2]] == [r["doc_id"] for r in before]
    assert after[2]["doc_id"] == BOOKS[2]["book"]


def test_buckets_the_model_or_the_corpus_cannot_fill_are_refused(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    with pytest.raises(PerplexityError, match="exceeds the model's maximum of 4096 tokens; use --context-lengths"):
        documents(BOOKS, "book", tokenizer, [1024, 8192], None, max_context=4096)
    with pytest.raises(PerplexityError, match="no document of the corpus has 20000 tokens"):
        documents(BOOKS[:2], "book", tokenizer, [20000], None, max_context=None)


def test_bucket_bounds_cover_every_scored_position_once():
    assert bucket_bounds([4096, 1024, 2048, 8192]) == [(1, 1024), (1024, 2048), (2048, 4096), (4096, 8192)]


def test_the_bootstrap_interval_of_two_documents_is_the_enumerated_one():
    # resampling two documents gives (a, a), (a, b), (b, a) or (b, b), each with probability 1/4:
    # the 2.5th and 97.5th percentiles are the ratios of (a, a) and (b, b)
    low, high = bootstrap_ratio_ci([1.0, 9.0], [2.0, 3.0])
    assert (low, high) == (0.5, 3.0)
    assert bootstrap_ratio_ci([2.0, 2.0, 2.0], [4.0, 4.0, 4.0]) == (0.5, 0.5)


def test_scored_metrics_without_their_buckets_are_refused(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"task": "perplexity", "kind": "scored", "checkpoint": "c",
                                "attention": "ppa:p=1/2,w=64", "n": 2, "by_length": {"1024": {"bits_per_byte": 1}}}))
    with pytest.raises(RunError, match="'by_length' must be a table of length -> token_perplexity"):
        read_metrics(path)
    path.write_text(json.dumps({"task": "perplexity", "kind": "ranked", "checkpoint": "c",
                                "attention": "ppa:p=1/2,w=64", "n": 2}))
    with pytest.raises(RunError, match="'kind' must be one of graded, scored"):
        read_metrics(path)


@pytest.mark.slow
def test_the_lm_eval_task_scores_the_same_books_as_stock_lm_eval_hf_at_full_attention(tiny):
    # ppa_perplexity is lm-eval's rolling perplexity over the vendored books: our lm-eval model at
    # p = 1 gives what stock lm-eval's hf model gives, windows and all
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from ppa_eval.lm_eval_model import PPALM
    from ppa_eval.tasks import TASKS_DIR

    def bits_per_byte(model) -> float:
        results = lm_eval.simple_evaluate(model=model, tasks=["ppa_perplexity"], limit=1,
                                          task_manager=TaskManager(include_path=str(TASKS_DIR), include_defaults=False))
        return results["results"]["ppa_perplexity"]["bits_per_byte,none"]

    options = {"pretrained": str(tiny), "dtype": "float32", "max_length": 2048, "batch_size": 2, "device": "cpu"}
    ours, stock = bits_per_byte(PPALM(attention="ppa:p=1,w=8", **options)), bits_per_byte(HFLM(**options))
    # a random model: about log2(49152) = 15.6 bits a token, over about 4.1 bytes a token
    assert ours == pytest.approx(stock, rel=1e-5) and 3 < ours < 4.5
