"""The settings of a stock `lm_eval --model hf --tasks gsm8k,minerva_math500` run (lm-eval 0.4.13),
so that ppa-eval at p = 1 can be checked against it: `--preset lm-eval`.

Each setting says what stock lm-eval uses and where that comes from. `option` names the
`ppa-eval evaluate` option the preset sets; where it is None, ppa-eval's task configs already
use the stock value (their prompts and stop sequences are lm-eval's) and nothing is set.
What the preset changes from ppa-eval's defaults: `--chat-template none` (default auto),
`--thinking none` (default off) and `--max-new-tokens 256` for both tasks (default: MATH-500 1,024).

Left to the user, as they are not settings of the task: the dtype (stock `dtype=auto` is the
checkpoint's own dtype, ppa-eval's auto is float32 on CPU and bfloat16 on GPU: pass the same
one to both, e.g. `--dtype float32` and `--model_args ...,dtype=float32`) and the batch size
(stock default 1; batched greedy decoding with left padding can differ in the last float bits).
"""

from __future__ import annotations

from dataclasses import dataclass

from ppa_eval.tasks import PAPER_TASKS, TASKS


@dataclass(frozen=True)
class StockSetting:
    value: object        # what stock lm-eval uses (per ppa-eval task where it differs by task: read from
                         # the task's YAML, which uses the stock value; tests check the two agree)
    why: str             # where lm-eval takes it from
    option: str | None   # the evaluate option the preset sets; None: ppa-eval already uses the value


LM_EVAL_PRESET: dict[str, StockSetting] = {
    "tasks": StockSetting(
        ",".join(PAPER_TASKS), "`--tasks gsm8k,minerva_math500`: ppa-eval's paper tasks build their prompts", "tasks"),
    "chat_template": StockSetting(
        "none", "no `--apply_chat_template`: the plain few-shot prompt goes to the model as is", "chat_template"),
    "thinking": StockSetting(
        "none", "lm-eval adds no think block (with no chat template there is nowhere to put one)", "thinking"),
    "max_new_tokens": StockSetting(
        256, "neither task YAML sets max_gen_toks, so HFLM's default max_gen_toks (256) applies", "max_new_tokens"),
    "num_fewshot": StockSetting(
        {name: TASKS[name].num_fewshot for name in PAPER_TASKS},
        "the YAMLs' num_fewshot: GSM8K draws from its train split per question, Minerva's 4 exemplars are fixed", None),
    "fewshot_seed": StockSetting(
        1234, "simple_evaluate's fewshot_random_seed default: it fixes GSM8K's exemplar draw", None),
    "stop": StockSetting(
        {name: TASKS[name].stop for name in PAPER_TASKS},
        "the YAMLs' generation_kwargs.until; HFLM also stops at the tokenizer's EOS token", None),
    "greedy": StockSetting(
        True, "the YAMLs' do_sample: false (temperature 0): seeds do not change a response", None),
}


def preset_options() -> dict[str, object]:
    """The evaluate options `--preset lm-eval` sets, as {option: value}."""
    return {setting.option: setting.value for setting in LM_EVAL_PRESET.values() if setting.option}
