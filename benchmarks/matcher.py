"""Benchmark DETR's Hungarian matching: our fused cost + one-launch solver against the usual host-side ways.

Decoder layers are stacked on the batch dimension (6 layers, as DETR's auxiliary losses need). Compared:

* ours: `detr_matching_cost` + `batched_linear_sum_assignment` (two launches on a GPU, nothing read back);
* transformers: the cost on the device, copied to the host, SciPy image by image (DETR / Transformers' matcher);
* lapx: the same copy, then `lap.lapjv` image by image, when `lapx` is installed;
* torch_linear_assignment: `batch_linear_assignment` on the GPU, when installed (full T only, no ragged batch).

Without a GPU it times our CPU fallback (PyTorch cost + SciPy loop) against the Transformers way at small sizes.
Usage: `python benchmarks/matcher.py [--out results.md] [--repeats 10]`.
"""

import argparse
import datetime
import platform
import time

import numpy as np
import scipy
import scipy.optimize
import torch

from tritonvision.kernels.hungarian import batched_linear_sum_assignment, detr_matching_cost
from tritonvision.kernels.matching_cost import detr_cost_reference

try:
    import triton
except ImportError:
    triton = None
try:
    import lap  # installed by the `lapx` package
except ImportError:
    lap = None
try:
    from torch_linear_assignment import batch_linear_assignment
except ImportError:
    batch_linear_assignment = None

LAYERS = 6
NUM_CLASSES = 92


def make_batch(batch, queries, counts, device, seed=0):
    """Random predictions for `LAYERS` stacked decoder layers and padded targets with `counts[b]` boxes."""
    gen = torch.Generator().manual_seed(seed)
    T = max(max(counts), 1)
    B = batch * LAYERS
    logits = torch.randn(B, queries, NUM_CLASSES, generator=gen)
    pred = torch.cat(
        [torch.rand(B, queries, 2, generator=gen), 0.05 + 0.4 * torch.rand(B, queries, 2, generator=gen)], -1
    )
    tgt = torch.cat([torch.rand(batch, T, 2, generator=gen), 0.05 + 0.4 * torch.rand(batch, T, 2, generator=gen)], -1)
    labels = torch.randint(0, NUM_CLASSES - 1, (batch, T), generator=gen)
    nt = torch.tensor(counts, dtype=torch.int64)
    stacked = [logits, pred, labels.repeat(LAYERS, 1), tgt.repeat(LAYERS, 1, 1), nt.repeat(LAYERS)]
    return [x.to(device) for x in stacked]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    fn()  # warm up (compilation, caches)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def ours(inputs, backend):
    cost = detr_matching_cost(*inputs, backend=backend)
    return batched_linear_sum_assignment(cost, inputs[4], backend=backend)


def host_loop(inputs, solver):
    """DETR / Transformers: cost on the device, one copy to the host, a solver per image."""
    cost = detr_cost_reference(*inputs, 1.0, 5.0, 2.0).cpu().numpy()
    return [solver(cost[b, :, :n]) for b, n in enumerate(inputs[4].tolist())]


def lapjv(c):
    if c.shape[1] == 0:
        return None
    return lap.lapjv(c.astype(np.float64), extend_cost=True)


def gpu_batch_solver(inputs):
    cost = detr_cost_reference(*inputs, 1.0, 5.0, 2.0)
    return batch_linear_assignment(cost)


def run(args):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    if device.type == "cuda":
        configs = [(b, q, [t] * b) for b in (8, 64) for q in (100, 300) for t in (5, 20, 50, 90)]
        backend = "triton"
    else:
        configs = [(8, 100, [t] * 8) for t in (5, 20)]
        backend = "scipy"  # the CPU fallback; the interpreted kernel is a test device, not a fast path
    rng = np.random.default_rng(0)
    coco = np.clip(rng.poisson(7, 64), 0, 90)
    coco[:3] = [88, 90, 85]
    configs.append((64 if device.type == "cuda" else 8, 100, coco[: 64 if device.type == "cuda" else 8].tolist()))
    for batch, queries, counts in configs:
        inputs = make_batch(batch, queries, counts, device)
        label = f"{batch}x{LAYERS} Q={queries} " + (f"T={counts[0]}" if len(set(counts)) == 1 else "T=ragged(COCO)")
        t_ours = timed(lambda inputs=inputs: ours(inputs, backend), device, args.repeats)
        t_hf = timed(
            lambda inputs=inputs: host_loop(inputs, scipy.optimize.linear_sum_assignment), device, args.repeats
        )
        t_lap = timed(lambda inputs=inputs: host_loop(inputs, lapjv), device, args.repeats) if lap is not None else None
        t_tla = None
        if batch_linear_assignment is not None and device.type == "cuda" and len(set(counts)) == 1:
            t_tla = timed(lambda inputs=inputs: gpu_batch_solver(inputs), device, args.repeats)
        rows.append((label, t_ours, t_hf, t_lap, t_tla))

    def fmt(t):
        return "n/a" if t is None else f"{t:.2f}"

    def ratio(t, ref):
        return "n/a" if t is None else f"{t / ref:.2f}x"

    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none (CPU only: SciPy vs our CPU fallback)"
    header = [
        f"# DETR matcher benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        (
            f"GPU: {gpu}; CPU: {platform.processor() or platform.machine()}; torch {torch.__version__}, "
            f"triton {getattr(triton, '__version__', 'n/a')}, scipy {scipy.__version__}, "
            f"lapx {'yes' if lap is not None else 'n/a'}, "
            f"torch_linear_assignment {'yes' if batch_linear_assignment is not None else 'n/a'}."
        ),
        f"Best of {args.repeats} runs, milliseconds, {LAYERS} decoder layers stacked; ratio = other / ours.",
        "",
        "| batch | ours | transformers (scipy) | ratio | lapx | ratio | torch_linear_assignment | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines = header + [
        f"| {label} | {fmt(o)} | {fmt(h)} | {ratio(h, o)} | {fmt(lp)} | {ratio(lp, o)} | {fmt(tl)} | {ratio(tl, o)} |"
        for label, o, h, lp, tl in rows
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table as markdown to this file")
    parser.add_argument("--repeats", type=int, default=10)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
