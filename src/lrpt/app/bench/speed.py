"""``lrpt bench --speed``: training-step time, peak memory and inference throughput, side by side.

Everything runs in one process on one frozen base model (on the device and in the dtype asked
for: PEFT's prompt tuning wraps the same copy), alternating between variants round by round
(the order rotates each round), and reports ratios measured within the same round:

* training step (forward + backward + AdamW step) of every method relative to ``pt`` at the same
  ``n``, and of lrpt's ``pt`` (shared prefix) and lrpt's naive ``pt`` relative to PEFT's prompt
  tuning, on the same batch (right-padded, loss on the answer word), starting from the same prompt;
* with ``naive=True``, every other static method also without the shared prefix (``M (naive)``:
  its prompt run with every row, as the papers' baselines computed it) against ``pt (naive)``,
  beside its shared-prefix ratio against ``pt``: a shorter prompt saves more when each example
  recomputes it (EPT's speed claim is against such a ``pt``);
* peak memory added by two training steps, each variant in a fresh child process (so no
  allocator cache from another variant hides it): on the CPU the resident set (Linux: the
  ``VmHWM`` high-water mark, reset through ``/proc/self/clear_refs`` after the model and batch
  are loaded), on CUDA ``max_memory_allocated``;
* inference throughput (examples/s, answer-position logits of left-padded batches) of lrpt's
  cached prompt against PEFT, and of a batch mixing 16 different prompts against a one-prompt batch;
* with ``against_dtype``, a second copy of the frozen model in that precision, whose ``pt`` and
  PEFT training steps alternate with the others in the same rounds: the step time of each in the
  main precision relative to the other (bf16 against float32, say).

Each variant's report says which path its prompt took (a shared prefix, or with every row, and
why). A variant meant to share its prefix that did not (an old or new transformers API, a
sliding-window model) gets no speed ratio: its ratios are replaced by the reason.
"""

from __future__ import annotations

import copy
import functools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import lrpt
from lrpt.app.bench.machine import machine_line
from lrpt.app.bench.speed_options import SpeedOptions
from lrpt.app.training.memory import StepMemory
from lrpt.bank import PromptBank
from lrpt.family import Family
from lrpt.methods.base import changes_input
from lrpt.model import IGNORE
from lrpt.placement import dtype_name, resolve_device, resolve_dtype

Step = Callable[[], float | None]
PEFT_PATH = "PEFT: with every row"
NAIVE = " (naive)"  # the name suffix of a variant run without the shared prefix
BANK_PATH = "shared prefixes, cached per task"


@dataclass
class Variant:
    name: str
    run: Step  # one timed unit of work; returns the loss (training) or None
    path: str = "with every row"  # which path the prompt took, in words
    unshared: str | None = None  # set when the variant is meant to share but did not: why
    times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def lrpt_variant(name: str, pm: lrpt.PromptedModel, run: Step, *, shared: bool) -> Variant:
    """A variant of lrpt's ``pm``; ``shared``: it is meant to run its prompt as a shared prefix."""
    reason = pm.unshared_reason()
    return Variant(name, run, pm.prefix_path(), reason if shared and reason else None)


def step_peak_mb(
    model: str, task: str, num_tokens: int, batch_size: int, name: str, device: str, dtype: str
) -> float:
    """Peak memory (MB) two training steps of variant ``name`` add, in this process: resident
    memory on the CPU, allocated memory on CUDA (:class:`~lrpt.app.training.memory.StepMemory`)."""
    base = lrpt.load_model(model, device=device, dtype=dtype)
    texts, answers, _ = task_texts(task, batch_size)
    batch = to_device(train_batch(base.tokenizer, texts, answers), base.model.device)
    key = name.removesuffix(NAIVE)
    key = key if key in lrpt.METHODS else "pt"
    naive = name.endswith(NAIVE) and key != "pt"
    variants = training_variants(base, batch, num_tokens, [key], naive=naive)
    (variant,) = [v for v in variants if v.name == name]
    memory = StepMemory(base.model.device)
    memory.start()
    for _ in range(2):
        variant.run()
    added = memory.stop()
    return float("nan") if added is None else added


def peak_memory(
    model: str, task: str, num_tokens: int, batch_size: int, names: list[str], device: str,
    dtype: str,
) -> dict[str, float]:  # fmt: skip
    """:func:`step_peak_mb` of each variant, each in a fresh child process."""
    if torch.cuda.is_available():  # what this process's allocator holds, the children need
        torch.cuda.empty_cache()
    peaks = {}
    for name in names:
        code = (
            "import sys, lrpt.app.bench.speed as b; "
            "print(b.step_peak_mb(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), "
            "sys.argv[5], sys.argv[6], sys.argv[7]))"
        )
        args = [model, task, str(num_tokens), str(batch_size), name, device, dtype]
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                              check=True)  # fmt: skip
        peaks[name] = float(proc.stdout.strip().splitlines()[-1])
    return peaks


def _sync() -> None:
    """Wait for every queued CUDA kernel (nothing to wait for on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(variants: list[Variant], rounds: int, warmup: int = 1) -> None:
    """Run every variant ``warmup`` times, then ``rounds`` times alternating (rotating order)."""
    for variant in variants:
        for _ in range(warmup):
            variant.run()
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            _sync()
            start = time.perf_counter()
            loss = variant.run()
            _sync()  # a CUDA step has only been queued when ``run`` returns
            variant.times.append(time.perf_counter() - start)
            if loss is not None:
                variant.losses.append(loss)


def ratios(variant: Variant, baseline: Variant) -> dict[str, Any]:
    """min/median/max of the per-round time ratios ``variant / baseline``; or, when either was
    meant to share its prefix and did not, ``{"refused": why}``."""
    for v in (variant, baseline):
        if v.unshared is not None:
            return {"refused": f"{v.name!r} did not share its prefix: {v.unshared}"}
    rs = [a / b for a, b in zip(variant.times, baseline.times, strict=True)]
    return {"min": min(rs), "median": statistics.median(rs), "max": max(rs)}


def _summary(v: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {"name": v.name, "path": v.path, "median_s": statistics.median(v.times),
                           "times_s": v.times}  # fmt: skip
    if v.losses:
        out["loss_first"] = v.losses[0]
    return out


# ------------------------------------------------------------------------------ batches
def task_texts(task: str, count: int) -> tuple[list[str], list[str], Any]:
    """``count`` rendered training inputs of ``task`` (a task key or a data file) and their
    answer words: its first ``count`` training examples, cycled when it has fewer."""
    from lrpt.app.data.tasks import TASKS, load_task
    from lrpt.app.data.user_data import load_user_data

    data = load_task(task) if task in TASKS else load_user_data(task)
    rows = [data.train[i % len(data.train)] for i in range(count)]
    return [data.render(e) for e in rows], [" " + data.verbalizer[e.label] for e in rows], data


def train_batch(tokenizer: Any, texts: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded ``text + answer`` with labels on the answer tokens only."""
    rows, labels = [], []
    for text, answer in zip(texts, answers, strict=True):
        a = tokenizer(text)["input_ids"]
        b = tokenizer(answer, add_special_tokens=False)["input_ids"]
        rows.append(a + b)
        labels.append([IGNORE] * len(a) + b)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [IGNORE] * (width - len(r)) for r in labels])
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` with every tensor on ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


def _train_step(module: torch.nn.Module, params: list, batch: dict) -> Step:
    opt = torch.optim.AdamW(params, lr=1e-3)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = module(**batch).loss
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def _peft_prompt_model(model: Any, pm: lrpt.PromptedModel) -> Any:
    """PEFT's prompt tuning on ``model``, starting from ``pm``'s prompt."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    n = pm.method.num_tokens
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n)
    peft_model: Any = get_peft_model(model, config)
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(pm.method.materialise())
    return peft_model


# ------------------------------------------------------------------------------ runs
def training_variants(
    base: lrpt.LoadedModel, batch: dict, num_tokens: int, methods: list[str], *,
    naive: bool = False,
) -> list[Variant]:  # fmt: skip
    """One training-step variant per method, plus lrpt's naive pt and PEFT's pt; with
    ``naive``, each other static method also without the shared prefix (``M (naive)``)."""
    from lrpt.app.trained import load_encoder

    variants = []
    for key in methods:
        cls = lrpt.METHODS[key]
        # methods that also update the input embeddings keep their budget-matched short prompt
        opts: dict[str, Any] = {} if changes_input(cls) else {"num_tokens": num_tokens}
        encoder, _ = load_encoder(key, base.name, None)
        pm = lrpt.prompt_model(key, base.model, base.tokenizer, encoder=encoder, seed=0, **opts)
        params = [p for p in pm.parameters() if p.requires_grad]
        step = _train_step(pm, params, batch)
        variants.append(lrpt_variant(key, pm, step, shared=cls.static))
        if key != "pt" and naive and cls.static:
            every_row = lrpt.prompt_model(key, base.model, base.tokenizer, seed=0,
                                          share_prefix=False, **opts)  # fmt: skip
            params = [p for p in every_row.parameters() if p.requires_grad]
            step = _train_step(every_row, params, batch)
            variants.append(lrpt_variant(key + NAIVE, every_row, step, shared=False))
        if key == "pt":
            plain = lrpt.prompt_model("pt", base.model, base.tokenizer, seed=0, share_prefix=False,
                                      num_tokens=num_tokens)  # fmt: skip
            params = list(plain.method.parameters())
            step = _train_step(plain, params, batch)
            variants.append(lrpt_variant("pt" + NAIVE, plain, step, shared=False))
            peft_model = _peft_prompt_model(copy.copy(base.model), pm)
            params = [p for p in peft_model.parameters() if p.requires_grad]
            variants.append(Variant("peft pt", _train_step(peft_model, params, batch), PEFT_PATH))
    return variants


def inference_variants(base: lrpt.LoadedModel, texts: list[str], num_tokens: int) -> list[Variant]:
    """Answer-position logits of one left-padded batch: lrpt cached, lrpt naive, PEFT, mixed."""
    tok = base.tokenizer
    tok.padding_side = "left"
    batch = to_device(dict(tok(texts, return_tensors="pt", padding=True)), base.model.device)
    pms = [
        lrpt.prompt_model("pt", base.model, tok, seed=s, num_tokens=num_tokens).eval()
        for s in range(len(texts))
    ]
    naive = copy.copy(pms[0])
    naive.share_prefix = False
    peft_model = _peft_prompt_model(copy.copy(base.model), pms[0]).eval()
    mixed = [f"task{i}" for i in range(len(texts))]
    single = ["task0"] * len(texts)

    def logits(fn: Callable[..., Any]) -> Step:
        def run() -> None:
            with torch.inference_mode():
                fn(**batch, logits_to_keep=1)

        return run

    variants = [
        lrpt_variant("lrpt pt (cached prefix)", pms[0], logits(pms[0]), shared=True),
        lrpt_variant("lrpt pt (naive)", naive, logits(naive), shared=False),
        Variant("peft pt (inference)", logits(peft_model), PEFT_PATH),
    ]
    if not pms[0].shares_prefix():  # a bank runs on shared prefixes only
        return variants
    bank = PromptBank({f"task{i}": pm for i, pm in enumerate(pms)})
    return [
        *variants,
        Variant("bank, one prompt", logits(functools.partial(bank, tasks=single)), BANK_PATH),
        Variant("bank, a prompt per row", logits(functools.partial(bank, tasks=mixed)), BANK_PATH),
    ]


def run_speed(options: SpeedOptions, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything; return a JSON-able report.

    ``options.device`` and ``options.dtype`` place the frozen base model (``auto`` as in ``lrpt
    train``); PEFT runs on the same copy, so both sides run in that precision. Prompts stay
    float32. ``against_dtype``: also time ``pt`` and PEFT on a copy in that precision, in the
    same rounds. ``naive``: also time each other static method without the shared prefix
    (``"both_paths"`` in the report: its step time against ``pt`` on each path).
    """
    model, task, num_tokens = options.model, options.task, options.num_tokens
    batch_size, rounds, against_dtype = options.batch_size, options.rounds, options.against_dtype
    torch.manual_seed(0)
    where = resolve_device(options.device)
    precision = dtype_name(resolve_dtype(options.dtype, where))
    base = lrpt.load_model(model, device=where, dtype=precision)
    if base.family != Family.CAUSAL:
        raise ValueError(f"the speed benchmark needs a causal LM; {model!r} is {base.family}")
    texts, answers, _ = task_texts(task, batch_size)
    batch = to_device(train_batch(base.tokenizer, texts, answers), where)
    train = training_variants(base, batch, num_tokens, options.timed, naive=options.naive)
    other: list[Variant] = []
    if against_dtype is not None:
        against = dtype_name(resolve_dtype(against_dtype, where))
        if against == precision:
            raise ValueError(f"--against-dtype {against_dtype!r} is the benchmark's own dtype")
        second = lrpt.load_model(model, device=where, dtype=against)
        other = training_variants(second, batch, num_tokens, ["pt"])
        for v in other:
            v.name = f"{v.name} [{against}]"
    progress(f"training steps: {len(train) + len(other)} variants × {rounds} rounds")
    measure(train + other, rounds)
    progress("peak memory: one child process per training variant")
    names = [v.name for v in train]
    peaks = peak_memory(model, task, num_tokens, batch_size, names, str(where), precision)
    progress(f"inference: 5 variants × {rounds * 3} rounds")
    infer = inference_variants(base, texts, num_tokens)
    measure(infer, rounds * 3)
    by = {v.name: v for v in train + infer}
    both_paths = {
        v.name.removesuffix(NAIVE): {
            "shared_vs_pt": ratios(by[v.name.removesuffix(NAIVE)], by["pt"]),
            "naive_vs_pt_naive": ratios(v, by["pt" + NAIVE]),
        }
        for v in train
        if v.name.endswith(NAIVE) and v.name != "pt" + NAIVE
    }
    report = {
        "model": model, "task": task, "num_tokens": num_tokens, "batch_size": batch_size,
        "rounds": rounds, "device": str(where), "dtype": precision,
        "peak_memory_measure": StepMemory(where).measure,
        "tokens_per_row_mean": float(batch["attention_mask"].sum(1).float().mean()),
        "torch_threads": torch.get_num_threads(), "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d"),
        "training": [_summary(v) | {"peak_mb": peaks[v.name]} for v in train],
        "training_vs_pt": {v.name: ratios(v, by["pt"]) for v in train},
        "training_vs_peft": {
            name: ratios(by[name], by["peft pt"]) for name in ("pt", "pt (naive)")
        },
        "inference": [_summary(v) for v in infer],
        "inference_throughput_vs_peft": {
            name: _inverse(ratios(by[name], by["peft pt (inference)"]))
            for name in ("lrpt pt (cached prefix)", "lrpt pt (naive)")
        },
        "mixed_vs_single_throughput": (
            _inverse(ratios(by["bank, a prompt per row"], by["bank, one prompt"]))
            if "bank, a prompt per row" in by
            else {"refused": f"no shared prefix: {by['lrpt pt (cached prefix)'].unshared}"}
        ),
    }  # fmt: skip
    if options.naive:
        report["both_paths"] = both_paths
    if other:
        report |= _against(train, other, against)
    return report


def _against(train: list[Variant], other: list[Variant], against: str) -> dict[str, Any]:
    """The report's precision section: each ``other`` variant (named ``"NAME [against]"``) and
    the step-time ratio of ``NAME`` in ``train`` (the benchmark's own precision) to it."""
    by = {v.name: v for v in train}
    pairs = [(v.name.removesuffix(f" [{against}]"), v) for v in other]
    return {
        "against_dtype": against,
        "training_against_dtype": [_summary(v) for v in other],
        "training_dtype_ratio": {name: ratios(by[name], v) for name, v in pairs if name in by},
    }


def _inverse(r: dict[str, Any]) -> dict[str, Any]:
    """Time ratios → throughput ratios (min and max swap)."""
    if "refused" in r:
        return r
    return {"min": 1 / r["max"], "median": 1 / r["median"], "max": 1 / r["min"]}


def _cells(r: dict[str, Any], sep: str = " | ") -> str:
    """``min | median | max`` of a ratio, or the reason it is not reported (and empty cells)."""
    if "refused" in r:
        return f"not reported: {r['refused']}" + (sep.strip() * 2 if sep == " | " else "")
    return sep.join(f"{r[k]:.2f}" for k in ("min", "median", "max"))


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables."""
    placement = ""
    if "dtype" in report:
        placement = f" Frozen model on {report['device']} in {report['dtype']}; prompts float32."
    if "peak_memory_measure" in report:
        placement += f" Peak MB: {report['peak_memory_measure']}."
    lines = [
        f"Model `{report['model']}`, task `{report['task']}`, n={report['num_tokens']}, "
        f"batch {report['batch_size']} "
        f"(mean {report['tokens_per_row_mean']:.1f} tokens/row), "
        f"{report['rounds']} rounds, {report['torch_threads']} threads, {report['machine']}, "
        f"{report['date']}.{placement}",
        "",
        "| training step | prompt path | median s | peak MB | step time vs pt "
        "(min / median / max) | loss |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["training"]:
        r = report["training_vs_pt"][row["name"]]
        peak = row.get("peak_mb", float("nan"))
        loss = row.get("loss_first", float("nan"))
        vs_pt = _cells(r, " / ")
        lines.append(
            f"| {row['name']} | {row['path']} | {row['median_s']:.3g} | {peak:.0f} | "
            f"{vs_pt} | {loss:.4f} |"
        )
    lines += ["", "| inference | prompt path | median s |", "|---|---|---|"]
    lines += [f"| {row['name']} | {row['path']} | {row['median_s']:.3g} |"
              for row in report["inference"]]  # fmt: skip
    lines += ["", "| vs PEFT prompt tuning | min | median | max |", "|---|---|---|---|"]
    for name, r in report["training_vs_peft"].items():
        lines.append(f"| training step time, lrpt {name} / PEFT | {_cells(r)} |")
    for name, r in report["inference_throughput_vs_peft"].items():
        lines.append(f"| inference examples/s, {name} / PEFT | {_cells(r)} |")
    r = report["mixed_vs_single_throughput"]
    lines.append(f"| mixed batch of {report['batch_size']} prompts / one-prompt batch, examples/s "
                 f"| {_cells(r)} |")  # fmt: skip
    if "against_dtype" in report:
        against = report["against_dtype"]
        lines += ["", f"| {report['dtype']} vs {against}, same rounds | median s in {against} "
                      "| step time ratio (min / median / max) |", "|---|---|---|"]  # fmt: skip
        medians = {row["name"]: row["median_s"] for row in report["training_against_dtype"]}
        for name, r in report["training_dtype_ratio"].items():
            lines.append(f"| {name} | {medians[f'{name} [{against}]']:.3g} | {_cells(r, ' / ')} |")
    if report.get("both_paths"):
        lines += [
            "",
            "| step time vs pt, both paths (min / median / max) | prefix shared (lrpt): M / pt "
            "| every row (the papers' setting): M (naive) / pt (naive) |",
            "|---|---|---|",
        ]
        for name, pair in report["both_paths"].items():
            shared = _cells(pair["shared_vs_pt"], " / ")
            every_row = _cells(pair["naive_vs_pt_naive"], " / ")
            lines.append(f"| {name} | {shared} | {every_row} |")
    return "\n".join(lines)
