"""From a plain few-shot prompt to the text a model is given: chat template and thinking switch.

The whole few-shot prompt goes into one user message, as `lm_eval --apply_chat_template` does
without `--fewshot_as_multiturn`. The user turn then holds exactly the prompt the plain (no chat
template) run sends, so the two differ only by the chat wrapper; and no exemplar solution sits in
an assistant turn, where reasoning templates rewrite or drop text around think tags.

Thinking is switched the way the template understands (see `thinking_switch`):
- a template that reads an `enable_thinking` argument (Qwen3 style) gets enable_thinking=False/True;
- a template that reads "/think" and "/no_think" in the system message (NVIDIA Nemotron Nano v2)
  gets a system message holding that switch;
- any other template is rendered as it is; with thinking "off" an open `<think>` it ends with is
  closed, and where it ends with no think block `<think></think>` is appended.
With a switch the empty block is the template's own (Qwen3 writes "<think>\n\n</think>\n\n").
The rendered prompt is then checked: with thinking "off" it must end with an empty think block,
with "on" it must not, and it must hold the few-shot prompt unchanged. A template that cannot do
what was asked fails loudly instead of running a different experiment.
"""

from __future__ import annotations

import re

from jinja2 import TemplateError

from ppa_eval.errors import PPAEvalError

CHAT_TEMPLATE_MODES = ("auto", "none")
THINKING_MODES = ("off", "on", "none")
EMPTY_THINK = "<think></think>"

_ENDS_WITH_EMPTY_THINK = re.compile(r"<think>\s*</think>\s*\Z")
_ENDS_WITH_OPEN_THINK = re.compile(r"<think>\s*\Z")
_PROBE = "What is 1 + 1?"


class PromptError(PPAEvalError):
    """A chat template or thinking setting that cannot produce the prompt asked for."""


def thinking_switch(tokenizer) -> str | None:
    """How the tokenizer's chat template turns thinking on and off: "enable_thinking" (a template
    argument), "system_flag" ("/think" or "/no_think" in the system message) or None.

    Found by rendering a probe question both ways and comparing what the template writes after
    it, not by reading the template's source: variable names there mislead (Nemotron's template
    keeps its flag in `ns.enable_thinking` and ignores an `enable_thinking` argument)."""

    def after_probe(system: str | None = None, **options) -> str:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": _PROBE}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **options)
        return rendered.partition(_PROBE)[2]

    if after_probe(enable_thinking=False) != after_probe(enable_thinking=True):
        return "enable_thinking"
    try:
        if after_probe(system="/no_think") != after_probe(system="/think"):
            return "system_flag"
    except TemplateError:  # a template without a system role (Gemma's) refuses a system message
        pass
    return None


def render_prompt(prompt: str, tokenizer, chat_template: str = "auto", thinking: str = "off",
                  gen_prefix: str = "") -> str:
    """The text to generate from: `prompt` as is (chat_template "none", or a tokenizer without a
    chat template), else `prompt` as one user message through the tokenizer's chat template,
    with its generation prompt and the thinking switch `thinking` ("off", "on" or "none").

    `gen_prefix` (lm-eval's field of that name) starts the answer: it follows the generation prompt
    directly, or the plain prompt after a space, as lm-eval places it.
    """
    if gen_prefix:
        separator = "" if _templated(tokenizer, chat_template) else " "
        return render_prompt(prompt, tokenizer, chat_template, thinking) + separator + gen_prefix
    if chat_template not in CHAT_TEMPLATE_MODES:
        raise PromptError(f"unknown chat template mode {chat_template!r}; use one of {', '.join(CHAT_TEMPLATE_MODES)}")
    if thinking not in THINKING_MODES:
        raise PromptError(f"unknown thinking mode {thinking!r}; use one of {', '.join(THINKING_MODES)}")
    if not _templated(tokenizer, chat_template):
        return prompt

    switch = thinking_switch(tokenizer) if thinking != "none" else None
    messages = [{"role": "user", "content": prompt}]
    options = {}
    if switch == "enable_thinking":
        options["enable_thinking"] = thinking == "on"
    elif switch == "system_flag":
        messages.insert(0, {"role": "system", "content": "/think" if thinking == "on" else "/no_think"})
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **options)

    if thinking == "off" and switch is None and not _ENDS_WITH_EMPTY_THINK.search(rendered):
        rendered = _ENDS_WITH_OPEN_THINK.sub("", rendered) + EMPTY_THINK
    _check(rendered, prompt, thinking)
    return rendered


def _templated(tokenizer, chat_template: str) -> bool:
    """Whether the prompt goes through a chat template: asked for, and the tokenizer has one."""
    return chat_template != "none" and tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def _check(rendered: str, prompt: str, thinking: str) -> None:
    if prompt.strip() not in rendered:
        raise PromptError(
            "the chat template changed the few-shot prompt inside the user message; set the chat template to 'none'"
        )
    ends_empty = bool(_ENDS_WITH_EMPTY_THINK.search(rendered))
    if thinking == "off" and not ends_empty:
        raise PromptError(
            f"the chat template did not end the prompt with an empty think block {EMPTY_THINK} although thinking "
            f"is off (it ends {rendered[-40:]!r}); set thinking to 'none' or the chat template to 'none'"
        )
    if thinking == "on" and ends_empty:
        raise PromptError(
            "the chat template closes the think block although thinking is on; set thinking to 'off' or 'none'"
        )
