"""Power retention in plain PyTorch: the CPU path of the retention models (the `retention`
package's Triton kernels run them on a GPU, retention.md in the docs says why both exist).

The same two functions as the `retention` package, with its tensor layout ([batch, tokens, heads,
head size]; `log_G`, one log-gate per KV head and token, float32) and its meaning, degree 2 only:

    Y_i = sum_{j<=i} w_ij V_j / sum_{j<=i} w_ij,   w_ij = (scale q_i . k_j)^2 * prod_{j<l<=i} g_l

`power_retention` is prefill: the attention form (all pairs at once, O(t^2)), or chunk by chunk
through the state when a chunk size is given and the sequence is longer than the switch-over
length. `power_retention_inference` is decode: one query against a state and the tail of tokens
not yet folded into it; it folds the tail into the state once the tail reaches the switch-over
length. The two forms are exact reformulations of each other: (q.k)^2 = phi(q).phi(k) with
phi(x) = x (x) x, so the state is S = sum_j decay_j phi(k_j) v_j^T with the normaliser
z = sum_j decay_j phi(k_j). Here phi keeps all d^2 products (simple; the package keeps the d(d+1)/2
distinct ones, padded to its tile sizes), so the states of the two implementations differ in
shape and are never mixed: a model runs one implementation throughout.

Everything is computed in float32 and returned in the input dtype. A key whose weight is zero
for every query (k = 0, as a padding token's is made) adds nothing to any sum; a query with no
weight at all (a padding row) gets 0, not 0/0.
"""

from __future__ import annotations

import torch

DEGREE = 2  # the only degree the released models and the package's state kernels support


def check_degree(deg: int) -> None:
    if deg != DEGREE:
        raise ValueError(f"power retention of degree {deg} is not implemented; the released models use degree 2")


def power_retention(Q, K, V, log_G=None, deg=2, scale=None, chunk_size=None, switch_over_seq_len=None):
    """Outputs [b, t, hq, d] of every token of a sequence (prefill). With `chunk_size`, sequences
    longer than `switch_over_seq_len` (default: the chunk size) go chunk by chunk through the state."""
    check_degree(deg)
    scale = Q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, gates = _grouped(Q, K, V, log_G)
    t = q.shape[1]
    if chunk_size is None or t <= (switch_over_seq_len or chunk_size):
        num, den = _attention_sums(q, k, v, gates.cumsum(1), scale)
        return _normalised(num, den, Q)
    state = None
    outputs = []
    for start in range(0, t, chunk_size):
        part = slice(start, start + chunk_size)
        local = gates[:, part].cumsum(1)  # log decay since the end of the previous chunk
        num, den = _attention_sums(q[:, part], k[:, part], v[:, part], local, scale)
        if state is not None:
            state_num, state_den = _state_sums(q[:, part], local, state, scale)
            num, den = num + state_num, den + state_den
        outputs.append(_normalised(num, den, Q))
        state = _folded(state, k[:, part], v[:, part], local)
    return torch.cat(outputs, dim=1)


def power_retention_inference(Q, K, V, log_G=None, initial_state=None, sum_of_keys=None, deg=2, scale=None,
                              switch_over_seq_len=None):
    """(Y [b, tq, hq, d], state, sum_of_keys) for the last tq tokens of the tail K, V, log_G (the
    tokens after the state, the queries' own included). A tail of switch_over_seq_len tokens or
    more is folded into the returned state, and the caller drops it; otherwise the state comes back
    unchanged."""
    check_degree(deg)
    scale = Q.shape[-1] ** -0.5 if scale is None else scale
    q, k, v, gates = _grouped(Q, K, V, log_G)
    cumulative = gates.cumsum(1)
    num, den = _attention_sums(q, k, v, cumulative, scale)
    state = None if initial_state is None else (initial_state, sum_of_keys)
    if state is not None:
        state_num, state_den = _state_sums(q, cumulative[:, -q.shape[1]:], state, scale)
        num, den = num + state_num, den + state_den
    if switch_over_seq_len is not None and k.shape[1] >= switch_over_seq_len:
        state = _folded(state, k, v, cumulative)
    return (_normalised(num, den, Q), *(state if state is not None else (None, None)))


def _grouped(Q, K, V, log_G):
    """float32 views: queries [b, t, hk, r, d] grouped by their KV head, keys and values [b, t, hk, d],
    log-gates [b, t, hk] (zeros without gating)."""
    b, t, hq, d = Q.shape
    hk = K.shape[2]
    gates = torch.zeros(K.shape[:3], dtype=torch.float32, device=K.device) if log_G is None else log_G.float()
    return Q.float().reshape(b, t, hk, hq // hk, d), K.float(), V.float(), gates


def _attention_sums(q, k, v, cumulative, scale):
    """sum_j w_ij v_j and sum_j w_ij over the keys k of this block, for queries that are its last
    tq tokens; `cumulative` [b, tk, hk] is the running sum of log-gates over the block."""
    tq, tk = q.shape[1], k.shape[1]
    scores = torch.einsum("bqhrd,bkhd->bhrqk", q, k) * scale
    log_decay = cumulative[:, -tq:].transpose(1, 2)[:, :, None, :, None] - cumulative.transpose(1, 2)[:, :, None, None, :]
    causal = torch.arange(tk - tq, tk)[:, None] >= torch.arange(tk)[None, :]
    weights = torch.where(causal, scores.square() * torch.exp(torch.where(causal, log_decay, 0.0)), 0.0)
    return torch.einsum("bhrqk,bkhd->bqhrd", weights, v), weights.sum(-1).permute(0, 3, 1, 2)


def _expand(x):
    """phi(x) = x (x) x, flattened: phi(q) . phi(k) = (q . k)^2."""
    return (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)


def _state_sums(q, cumulative, state, scale):
    """The state's share of the sums for queries whose log decay since the state is `cumulative` [b, tq, hk]."""
    S, z = state
    phi = _expand(q * scale) * torch.exp(cumulative)[..., None, None]
    return torch.einsum("bqhrD,bhDe->bqhre", phi, S), torch.einsum("bqhrD,bhD->bqhr", phi, z)


def _folded(state, k, v, cumulative):
    """The state after the block k, v: the old state decayed over the block, plus each key's phi(k) v^T
    decayed from its position to the block's end."""
    decay = torch.exp(cumulative[:, -1:] - cumulative)[..., None]  # [b, tk, hk, 1]
    phi = _expand(k) * decay
    S, z = torch.einsum("bkhD,bkhe->bhDe", phi, v), phi.sum(1)
    if state is not None:
        block = torch.exp(cumulative[:, -1])  # [b, hk]
        S, z = S + state[0] * block[..., None, None], z + state[1] * block[..., None]
    return S, z


def _normalised(num, den, like):
    b, t, hk, r, d = num.shape
    out = num / den.clamp_min(torch.finfo(torch.float32).tiny)[..., None]
    return out.reshape(b, t, hk * r, d).to(like.dtype)
