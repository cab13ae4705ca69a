"""Perplexity of long documents under an attention pattern, by token position.

A document is the first max(lengths) tokens of a long text of the task's corpus (the perplexity
task: books of the World English Bible), scored in one forward pass: each token after the first
gets its log-probability given every token before it that the pattern lets it see. The scored
tokens are grouped by position into the buckets of `lengths`: bucket L holds the tokens at
positions (L_prev, L], L_prev being the bucket below it (1 for the first: the first token has no
context and is not scored). Bucket 8192 thus measures how well tokens 4097-8192 are predicted,
which is where a pattern that thins out distant keys differs from full attention; tokens within
the window see the same keys under every p.

Per bucket: token perplexity exp(nll / tokens) and bits per byte nll / (ln 2 * bytes), bytes being
the UTF-8 bytes of the text those tokens decode to, which compares models across tokenizers. 95%
intervals come from a bootstrap over documents: the tokens of one document are not independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ppa_eval.errors import PPAEvalError
from ppa_eval.stats import bootstrap_ratio_ci

# Tokens per forward pass at most (rows x length): one 8k row's float32 logits over a 49k
# vocabulary take 1.6 GB, and a batch multiplies that.
TOKENS_PER_BATCH = 16384


class PerplexityError(PPAEvalError):
    """Buckets that the model or the corpus cannot fill."""


@dataclass(frozen=True)
class Document:
    doc_id: str
    token_ids: list[int]  # the first max(lengths) tokens of its text, no special tokens added


def documents(records: list[dict], id_field: str, tokenizer, lengths: list[int], limit: int | None,
              max_context: int | None) -> list[Document]:
    """The first `limit` records (all when None) that reach max(lengths) tokens, cut to that length.
    A corpus text shorter than that is left out, so every bucket is scored on the same documents."""
    longest = max(lengths)
    if max_context is not None and longest > max_context:
        raise PerplexityError(f"context length {longest} exceeds the model's maximum of {max_context} tokens; "
                              f"use --context-lengths up to {max_context}")
    docs = []
    for record in records:
        ids = tokenizer(record["text"], add_special_tokens=False)["input_ids"]
        if len(ids) >= longest:
            docs.append(Document(str(record[id_field]), ids[:longest]))
        if len(docs) == limit:
            break
    if not docs:
        raise PerplexityError(f"no document of the corpus has {longest} tokens in this tokenizer; "
                              "use shorter --context-lengths")
    return docs


def bucket_bounds(lengths: list[int]) -> list[tuple[int, int]]:
    """(L_prev, L] position ranges, one per bucket, positions counted from 1."""
    ordered = sorted(lengths)
    return list(zip([1, *ordered[:-1]], ordered))


def bucket_scores(doc: Document, logprobs: list[float], tokenizer, lengths: list[int]) -> list[dict]:
    """Per bucket of one document: its length, scored tokens, the bytes they decode to, and their
    summed negative log-likelihood in nats. `logprobs[j]` is the log-probability of token j + 1."""
    def text_bytes(count: int) -> int:
        text = tokenizer.decode(doc.token_ids[:count], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return len(text.encode("utf-8"))

    bounds = bucket_bounds(lengths)
    size = {count: text_bytes(count) for count in {1, *(high for _, high in bounds)}}  # each prefix decoded once
    scores = []
    for low, high in bounds:
        # tokens at positions low+1..high are token indices low..high-1, scored by logprobs[low-1:high-1]
        nll = -sum(logprobs[low - 1 : high - 1])
        scores.append({"length": high, "tokens": high - low, "bytes": size[high] - size[low], "nll": nll})
    return scores


def by_length(samples: list[dict], seed: int = 0) -> dict[str, dict]:
    """metrics.json's per-bucket entries from the samples' `buckets`: token perplexity and bits per
    byte, each with its per-document bootstrap 95% interval, and what they were computed on."""
    lengths = sorted({bucket["length"] for sample in samples for bucket in sample["buckets"]})
    entries = {}
    for length in lengths:
        cells = [bucket for sample in samples for bucket in sample["buckets"] if bucket["length"] == length]
        nll, tokens, size = ([cell[key] for cell in cells] for key in ("nll", "tokens", "bytes"))
        per_token = bootstrap_ratio_ci(nll, tokens, seed=seed)
        per_byte = bootstrap_ratio_ci(nll, size, seed=seed)
        entries[str(length)] = {
            "token_perplexity": math.exp(sum(nll) / sum(tokens)),
            "token_perplexity_ci95": [math.exp(bound) for bound in per_token],
            "bits_per_byte": sum(nll) / math.log(2) / sum(size),
            "bits_per_byte_ci95": [bound / math.log(2) for bound in per_byte],
            "tokens": sum(tokens), "bytes": sum(size), "n": len(cells),
        }
    return entries
