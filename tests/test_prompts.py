"""Chat templates and the thinking switch, on the embedded model's own template and on fixtures of
the template shapes that exist (Nemotron Nano v2, Qwen3, DeepSeek-R1, Llama 3). Expected prompts
are written out by hand from each template's layout."""

from pathlib import Path

import pytest
from lm_eval.tasks import TaskManager
from lm_eval.tasks.minerva_math.utils import list_fewshot_samples
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from ppa_eval.prompts import EMPTY_THINK, PromptError, render_prompt, thinking_switch
from ppa_eval.tasks import TASKS_DIR, load_docs, load_task

FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"
SMOLLM2_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def template_tokenizer(template: str, bos_token: str = "<s>"):
    """A tokenizer with no vocabulary to speak of: rendering a chat template needs none."""
    backend = Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos_token, chat_template=template)


def fixture_tokenizer(name: str, bos_token: str = "<s>"):
    return template_tokenizer((FIXTURES / f"{name}.jinja").read_text(), bos_token)


@pytest.fixture(scope="module")
def prompt() -> str:
    """The real few-shot prompt of the first MATH-500 problem."""
    return load_docs(load_task("math500"), limit=1)[0].prompt


@pytest.fixture(scope="module")
def smollm2():
    """The embedded model's tokenizer and chat template, read from its GGUF file."""
    from ppa_eval.engines.embedded import embedded_gguf

    gguf = embedded_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def test_the_prompt_holds_exemplars_then_problem(prompt):
    positions = [prompt.index(f"Problem:\n{e['problem']}\n\nSolution: ") for e in list_fewshot_samples()]
    assert positions == sorted(positions) and positions[0] == 0
    assert prompt.endswith("Problem:\nConvert the point $(0,3)$ in rectangular coordinates to polar coordinates.  "
                           "Enter your answer in the form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$"
                           "\n\nSolution:")


@pytest.mark.slow
def test_embedded_model_template_gets_the_empty_think_block(smollm2, prompt):
    chat = SMOLLM2_SYSTEM + "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(prompt, smollm2) == chat + EMPTY_THINK
    assert render_prompt(prompt, smollm2, thinking="off").endswith(
        "Solution:<|im_end|>\n<|im_start|>assistant\n<think></think>")
    assert render_prompt(prompt, smollm2, thinking="on") == chat
    assert render_prompt(prompt, smollm2, thinking="none") == chat


@pytest.mark.slow
def test_thinking_none_is_what_lm_eval_sends_with_apply_chat_template(smollm2, prompt):
    task = TaskManager(include_path=str(TASKS_DIR), include_defaults=False).load("ppa_math500")["tasks"]["ppa_math500"]

    def chat_template(messages, add_generation_prompt=True):  # as lm-eval's HFLM.apply_chat_template
        return smollm2.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    lm_eval_chat = task.fewshot_context(task.eval_docs[0], num_fewshot=4, apply_chat_template=True,
                                        chat_template=chat_template)
    assert render_prompt(prompt, smollm2, thinking="none") == lm_eval_chat


@pytest.mark.slow
@pytest.mark.parametrize("thinking", ["off", "on", "none"])
def test_chat_template_none_sends_the_plain_prompt(smollm2, prompt, thinking):
    assert render_prompt(prompt, smollm2, chat_template="none", thinking=thinking) == prompt
    assert render_prompt(prompt, None, thinking=thinking) == prompt
    assert render_prompt(prompt, template_tokenizer(None), thinking=thinking) == prompt


NEMOTRON_CHAT = "<SPECIAL_10>System\n\n<SPECIAL_11>User\n{prompt}\n<SPECIAL_11>Assistant\n"
QWEN3_CHAT = "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
DEEPSEEK_CHAT = "<｜begin▁of▁sentence｜><｜User｜>{prompt}<｜Assistant｜>"
LLAMA3_CHAT = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize(
    "fixture, bos_token, thinking, expected",
    [
        # "/no_think" or "/think" in a system message; thinking is on by default
        ("nemotron_nano_v2", "<s>", "off", NEMOTRON_CHAT + "<think></think>"),
        ("nemotron_nano_v2", "<s>", "on", NEMOTRON_CHAT + "<think>\n"),
        ("nemotron_nano_v2", "<s>", "none", NEMOTRON_CHAT + "<think>\n"),
        # enable_thinking=False writes the template's own empty block
        ("qwen3", "<s>", "off", QWEN3_CHAT + "<think>\n\n</think>\n\n"),
        ("qwen3", "<s>", "on", QWEN3_CHAT),
        ("qwen3", "<s>", "none", QWEN3_CHAT),
        # the template opens a think block itself: thinking off closes it
        ("deepseek_r1", "<｜begin▁of▁sentence｜>", "off", DEEPSEEK_CHAT + "<think></think>"),
        ("deepseek_r1", "<｜begin▁of▁sentence｜>", "on", DEEPSEEK_CHAT + "<think>\n"),
        ("deepseek_r1", "<｜begin▁of▁sentence｜>", "none", DEEPSEEK_CHAT + "<think>\n"),
        # no thinking in the template: the block is appended
        ("llama3", "<|begin_of_text|>", "off", LLAMA3_CHAT + "<think></think>"),
        ("llama3", "<|begin_of_text|>", "on", LLAMA3_CHAT),
        ("llama3", "<|begin_of_text|>", "none", LLAMA3_CHAT),
    ],
)
def test_template_shapes(prompt, fixture, bos_token, thinking, expected):
    rendered = render_prompt(prompt, fixture_tokenizer(fixture, bos_token), thinking=thinking)
    assert rendered == expected.format(prompt=prompt)


def test_a_template_that_always_closes_thinking():
    tokenizer = template_tokenizer("{% for m in messages %}{{ m.content }}{% endfor %}"
                                   "{% if add_generation_prompt %}|assistant|<think></think>{% endif %}")
    assert render_prompt("Question: 1+1?\nAnswer:", tokenizer) == "Question: 1+1?\nAnswer:|assistant|<think></think>"
    with pytest.raises(PromptError, match="closes the think block although thinking is on"):
        render_prompt("Question: 1+1?\nAnswer:", tokenizer, thinking="on")


def test_a_switch_that_does_not_write_an_empty_think_block_fails_loudly():
    # This template turns thinking off its own way (a marker, as reasoning-effort templates do):
    # running it would not be the paper's setting.
    tokenizer = template_tokenizer("{% for m in messages %}{{ m.content }}{% endfor %}{% if add_generation_prompt %}"
                                   "|assistant|{% if enable_thinking is false %}<reasoning:off>{% endif %}{% endif %}")
    with pytest.raises(PromptError, match=r"did not end the prompt with an empty think block <think></think>"):
        render_prompt("Question: 1+1?\nAnswer:", tokenizer)
    assert render_prompt("Question: 1+1?\nAnswer:", tokenizer, thinking="on") == "Question: 1+1?\nAnswer:|assistant|"


def test_switches_are_found_by_rendering_not_by_reading_the_source():
    assert thinking_switch(fixture_tokenizer("nemotron_nano_v2")) == "system_flag"  # its source says enable_thinking
    assert thinking_switch(fixture_tokenizer("qwen3")) == "enable_thinking"
    assert thinking_switch(fixture_tokenizer("deepseek_r1")) is None
    assert thinking_switch(fixture_tokenizer("llama3")) is None
    # strips the switches from messages but has no thinking mode: no switch
    strips = "{% for m in messages %}{{ m.content.replace('/think', '').replace('/no_think', '') }}{% endfor %}"
    assert thinking_switch(template_tokenizer(strips)) is None
    # refuses a system message, as Gemma's template does
    no_system = ("{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
                 "{% for m in messages %}<user>{{ m.content }}{% endfor %}<model>")
    assert thinking_switch(template_tokenizer(no_system)) is None
    rendered = render_prompt("Question: 1+1?\nAnswer:", template_tokenizer(no_system))
    assert rendered == "<user>Question: 1+1?\nAnswer:<model><think></think>"


def test_a_template_that_changes_the_prompt_fails_loudly():
    # Nemotron's template deletes "/think" wherever it appears in a user message.
    with pytest.raises(PromptError, match="changed the few-shot prompt"):
        render_prompt("Problem:\nSimplify $x/think$.\n\nSolution:", fixture_tokenizer("nemotron_nano_v2"))


def test_unknown_modes_are_refused(prompt):
    with pytest.raises(PromptError, match="unknown thinking mode 'maybe'; use one of off, on, none"):
        render_prompt(prompt, None, thinking="maybe")
    with pytest.raises(PromptError, match="unknown chat template mode 'yes'; use one of auto, none"):
        render_prompt(prompt, None, chat_template="yes")
