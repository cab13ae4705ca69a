"""ppa-eval's engines as an lm-eval model named `ppa`: any lm-eval task under any attention pattern.

    ppa-eval lm-eval --model ppa --model_args pretrained=PATH,attention=ppa:p=3/4,w=64,engine=vllm --tasks ...

lm-eval 0.4.13 finds a model only in its registry (lm_eval.api.registry.model_registry), which it
fills by importing lm_eval.models; it scans no entry points, so the stock `lm_eval` command cannot
see a model of another package. Importing this module registers `ppa`; `ppa-eval lm-eval ARGS`
(`run_lm_eval`) imports it and then hands ARGS to lm-eval's own command line. From Python: import
this module, then lm_eval.simple_evaluate(model="ppa", model_args=...).

Model arguments: pretrained (a checkpoint directory or .gguf file; default the embedded model),
attention (a pattern spec; default the checkpoint's config's pattern, else full attention; one
that contradicts the config needs force=True, as in `ppa-eval evaluate`), engine (hf or vllm),
device, dtype, attn_kernel (hf), thinking (off, on or none: the think block under
--apply_chat_template), max_length (tokens per scored sequence; default the model's context),
batch_size, seed, and for vLLM the fields of VLLMOptions (tensor_parallel_size, max_model_len, ...).
lm-eval splits model_args at every comma, so `attention=ppa:p=3/4,w=64` arrives as `attention` and
`w`: an argument that is neither the model's nor a vLLM option is put back into the spec.

The three request types:
  - generate_until: the engine's greedy generation (generate_batch), as `ppa-eval evaluate` runs
    it. Under lm-eval's --apply_chat_template the prompt is rendered by ppa_eval.prompts.render_prompt
    (one user message, the thinking switch, the empty think block), so the same few-shot prompt
    gets the same text and the same completion as in `ppa-eval evaluate`.
  - loglikelihood: context + continuation, tokenized as lm-eval's hf model tokenizes them
    (TemplateLM) and cut on the left to max_length + 1 tokens, scored in one pass: a forward under
    the mask on the transformers engine (engines/hf_scoring.py), prompt log-probs through the
    plug-in on vLLM. The sum of the continuation's log-probs, and whether every one of its tokens
    is the greedy choice.
  - loglikelihood_rolling: the document cut into disjoint windows of max_length tokens by lm-eval's
    get_rolling_token_windows, as its hf model cuts it, and the windows' log-likelihoods summed.
    Each window is a sequence of its own: its first token attends only itself, and the pattern's
    sinks are the window's first tokens.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import lm_eval.models  # noqa: F401  the stock models: lm-eval imports them itself only into an empty registry
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from ppa_eval.errors import PPAEvalError
from ppa_eval.patterns import BlockPattern, format_spec, full_causal
from ppa_eval.prompts import render_prompt
from ppa_eval.settings import Settings



class LMEvalModelError(PPAEvalError):
    """A model argument or request the `ppa` lm-eval model cannot serve."""


def rejoin_spec(attention: str | None, extra: dict) -> tuple[str | None, dict]:
    """(the attention spec, the vLLM options) from `attention` and the model arguments that are not
    the model's own: lm-eval split the spec at its commas into arguments of their own, so those that
    are not vLLM options go back into it (its parser names any key its family does not take)."""
    from ppa_eval.engines.vllm_engine import VLLMOptions

    if attention is None:
        return None, extra
    vllm_options = {field.name for field in fields(VLLMOptions)}
    spec = ",".join([str(attention), *(f"{key}={value}" for key, value in extra.items() if key not in vllm_options)])
    return spec, {key: value for key, value in extra.items() if key in vllm_options}


def resolve_attention(checkpoint: Path, attention: str | None, force: bool) -> BlockPattern:
    """The pattern to score under: `attention`, else the checkpoint's own, else full attention."""
    from ppa_eval.checkpoints import config_pattern, resolve_pattern

    if attention is None and config_pattern(checkpoint) is None:
        return full_causal()
    return resolve_pattern(checkpoint, attention=attention, force=force)


def _start_engine(checkpoint: Path, pattern: BlockPattern, engine: str, device: str, dtype: str,
                 attn_kernel: str | None, seed: int, options: dict):
    """The engine `engine` names, as `ppa-eval evaluate` starts it; `options` are VLLMOptions fields."""
    from ppa_eval.engines import ENGINES, make_engine
    from ppa_eval.engines.vllm_engine import VLLMOptions
    from ppa_eval.settings import Settings

    if engine not in ENGINES:
        raise LMEvalModelError(f"unknown engine {engine!r}; use engine=" + " or engine=".join(ENGINES))
    known = {field.name for field in fields(VLLMOptions)}
    if unknown := sorted(set(options) - known):
        raise LMEvalModelError(f"unknown model argument(s) {', '.join(unknown)} for the ppa model; it takes "
                               "pretrained, attention, force, engine, device, dtype, attn_kernel, thinking, max_length, "
                               f"batch_size, seed and, with engine=vllm, {', '.join(sorted(known))}")
    if options and engine != "vllm":
        raise LMEvalModelError(f"{', '.join(options)} set vLLM options; add engine=vllm or drop them")
    if int(options.get("data_parallel_size", 1)) != 1:
        raise LMEvalModelError("the ppa model runs one vLLM engine; leave out data_parallel_size "
                               "(use tensor_parallel_size, or one lm-eval per GPU)")
    if attn_kernel is not None and engine != "hf":
        raise LMEvalModelError("attn_kernel picks the transformers engine's attention; drop it with engine=vllm")
    settings = Settings(engine=engine, device=device, dtype=dtype, attn_kernel=attn_kernel, seed=seed,
                        engine_options=options)
    return make_engine(checkpoint, pattern, settings)


@register_model("ppa")
class PPALM(TemplateLM):
    """lm-eval's model interface over a ppa-eval engine (see the module docstring)."""

    def __init__(self, pretrained: str | None = None, attention: str | None = None, engine: str = "hf",
                 device: str | None = None, dtype: str = "auto", attn_kernel: str | None = None,
                 thinking: str = "off", max_length: int | None = None, batch_size: int | str = 1,
                 max_batch_size: int | None = None,  # lm-eval passes it for its "auto" batch size; unused
                 seed: int = Settings.seed, force: bool = False, **extra):
        from ppa_eval.checkpoints import check_readable
        from ppa_eval.engines.embedded import embedded_checkpoint
        from ppa_eval.engines.model_files import max_context

        super().__init__()
        checkpoint = Path(pretrained) if pretrained else embedded_checkpoint()
        check_readable(checkpoint)
        attention, options = rejoin_spec(attention, extra)
        self.pattern = resolve_attention(checkpoint, attention, force)
        self._device = _device(device)
        self.engine_name, self.checkpoint, self.thinking = engine, checkpoint, thinking
        self.batch_size = _batch_size(batch_size)
        self.engine = _start_engine(checkpoint, self.pattern, engine, self._device, dtype, attn_kernel, int(seed),
                                    options)
        self.tokenizer = self.engine.tokenizer
        if max_length:
            self.max_length = int(max_length)
        elif engine == "vllm":  # a scored row is max_length + 1 prompt tokens, and vLLM generates one more
            self.max_length = self.engine.llm.llm_engine.model_config.max_model_len - 2
        else:
            self.max_length = max_context(checkpoint) or 2048

    # ---- tokens, as lm-eval's hf model makes them ------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """The token an empty context and the first rolling window start from (lm-eval's hf model's)."""
        return self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id

    @property
    def max_gen_toks(self) -> int:
        return 256  # lm-eval's hf model's default, for tasks that set no max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # the tokenizer's own special tokens unless told, none before a string that starts with them
        if add_special_tokens is None and string.startswith(self.tokenizer.decode(self.prefix_token_id)):
            add_special_tokens = False
        options = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return self.tokenizer.encode(string, **options)

    def get_model_info(self) -> dict:
        """What lm-eval records beside the results: the pattern they were scored under, and how."""
        return {"ppa_attention": format_spec(self.pattern), "engine": self.engine_name, "dtype": self.engine.dtype,
                "checkpoint": str(self.checkpoint), "max_length": self.max_length}

    # ---- the three request types ------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """requests: (cache key, context tokens, continuation tokens) -> (log-likelihood, greedy)."""
        rows = [(context + continuation)[-(self.max_length + 1):] for _, context, continuation in requests]
        answers = []
        for (key, _, continuation), (logprobs, greedy) in zip(requests, self._score(rows, disable_tqdm)):
            answer = (sum(logprobs[-len(continuation):]), all(greedy[-len(continuation):]))
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
            answers.append(answer)
        return answers

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owners = [], []
        for index, request in enumerate(requests):
            (text,) = request.args
            for context, continuation in map(make_disjoint_window, get_rolling_token_windows(
                    self.tok_encode(text), self.prefix_token_id, self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm)):
            totals[owner] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy completions, batched by their stop strings and token limit, similar lengths together."""
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(self._generation_key(request.args[1]), []).append(index)
        texts: list[str | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="ppa generate_until")
        for (stop, max_new_tokens), indices in groups.items():
            indices.sort(key=lambda i: -len(requests[i].args[0]))
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start:start + self.batch_size]
                generations = self.engine.generate_batch([requests[i].args[0] for i in batch], max_new_tokens, stop)
                for i, generation in zip(batch, generations):
                    texts[i] = generation.text
                    self.cache_hook.add_partial("generate_until", requests[i].args, generation.text)
                progress.update(len(batch))
        progress.close()
        return texts

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """lm-eval's chat history as `ppa-eval evaluate` renders a prompt: one user message through
        render_prompt (its thinking switch and empty think block), then the answer's start, if any.
        Other histories (lm-eval's few-shot turns, a system message) go through the chat template as
        lm-eval's hf model renders them, which knows no thinking switch: only with thinking=none."""
        messages, gen_prefix = list(chat_history), ""
        if not add_generation_prompt and messages and messages[-1]["role"] == "assistant":
            gen_prefix = messages.pop()["content"]
        if [message["role"] for message in messages] == ["user"]:
            return render_prompt(messages[0]["content"], self.tokenizer, "auto", self.thinking, gen_prefix)
        if self.thinking != "none":
            raise LMEvalModelError(
                f"lm-eval sent a chat of the roles {[message['role'] for message in chat_history]} (few-shot turns "
                "are its default with --apply_chat_template); ppa-eval renders one user message: pass "
                "--fewshot_as_multiturn false (and no --system_instruction), or the model argument thinking=none to "
                "render the turns as lm-eval's hf model does")
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # ---- helpers ----------------------------------------------------------------------------------

    def _score(self, rows: list[list[int]], disable_tqdm: bool) -> list[tuple[list[float], list[bool]]]:
        """engine.score_tokens over batches of similar length, longest first (memory runs out at once, if at all)."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        scores: list = [None] * len(rows)
        for start in tqdm(range(0, len(order), self.batch_size), disable=disable_tqdm, desc="ppa scoring"):
            batch = order[start:start + self.batch_size]
            for index, score in zip(batch, self.engine.score_tokens([rows[i] for i in batch])):
                scores[index] = score
        return scores

    def _generation_key(self, options: dict) -> tuple[tuple[str, ...], int]:
        """(stop strings, max new tokens) of a generate_until request; our engines decode greedily only."""
        if options.get("do_sample") or float(options.get("temperature") or 0) > 0:
            raise LMEvalModelError("the ppa model decodes greedily; set do_sample: false and temperature: 0 "
                                   "(--gen_kwargs do_sample=false,temperature=0)")
        until = options.get("until") or ()
        stop = (until,) if isinstance(until, str) else tuple(until)
        return stop, int(options.get("max_gen_toks", self.max_gen_toks))


def _device(requested: str | None) -> str:
    """lm-eval's --device, which is "cuda:0" unless given: on a machine without CUDA that means the
    CPU, as it does for lm-eval's hf model."""
    import torch

    if requested is None or requested.startswith("cuda") and not torch.cuda.is_available():
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _batch_size(value: int | str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise LMEvalModelError(f"batch_size {value!r}: the ppa model takes a number (no 'auto'); "
                               "e.g. --batch_size 8") from None
    if size < 1:
        raise LMEvalModelError(f"batch_size {size}: give 1 or more")
    return size


def run_lm_eval(arguments: list[str]) -> None:
    """lm-eval's own command line with `arguments` (as after `lm_eval`), `ppa` registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm-eval", *arguments]  # lm-eval's parser reads sys.argv itself
    cli_evaluate()
