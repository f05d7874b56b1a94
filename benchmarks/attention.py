"""Benchmark the fused Triton attention against PyTorch's attention implementations on one GPU.

Run: ``python benchmarks/attention.py [--out results.md] [--cases vit_b16,detr_enc] [--modes fwd,fwd+bwd]``.

Cases are the shapes the tritonvision models run (ViT-B/16, ViT-L/16, ViT-hybrid at 384, DeiT-S, the DETR
encoder and the DETR decoder's cross-attention, both with ragged key padding). Peers measured in the same
process: every SDPA backend that accepts the case, compiled FlexAttention with a block mask, and eager
attention. Times are medians from `triton.testing.do_bench`; the TFLOP/s column counts 4*B*H*Nq*Nk*D per
forward and 2.5x that for forward+backward, and "% peak" relates it to a large bf16 matmul timed in the
same run. Without a CUDA device the script says so and exits 0. Never imported by the tests.
"""

import argparse
import datetime
import math
import platform
import sys

import torch

try:
    import triton
    from triton.testing import do_bench
except ImportError:
    triton = None

# (name, B, H, Nq, Nk, D, ragged key padding)
CASES = [
    ("vit_b16", 256, 12, 197, 197, 64, False),
    ("vit_l16", 128, 16, 197, 197, 64, False),
    ("hybrid_384", 64, 12, 577, 577, 64, False),
    ("deit_s", 256, 6, 197, 197, 64, False),
    ("detr_enc", 8, 8, 1100, 1100, 32, True),
    ("detr_cross", 8, 8, 100, 1100, 32, True),
]


def _ragged_mask(B, Nk, device):
    """True = padded key; each image keeps between ~60% and 100% of its tokens, never none."""
    g = torch.Generator().manual_seed(0)
    keep = (Nk * (0.6 + 0.4 * torch.rand(B, generator=g))).long().clamp(1, Nk)
    keep[0] = Nk
    return (torch.arange(Nk)[None, :] >= keep[:, None]).to(device)


def _sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def fn(q, k, v, mask):
        attn_mask = None if mask is None else ~mask[:, None, None, :]  # SDPA: True = attend
        with sdpa_kernel([backend]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)

    return fn


def _eager(q, k, v, mask):
    s = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if mask is not None:
        s = s.masked_fill(mask[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(s.float(), -1).to(q.dtype), v)


def _flex():
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False)
    cache = {}

    def fn(q, k, v, mask):
        block_mask = None
        if mask is not None:
            key = (mask.data_ptr(), tuple(mask.shape), q.shape[2])
            if key not in cache:

                def keep(b, h, q_idx, kv_idx):
                    return ~mask[b, kv_idx]

                cache[key] = create_block_mask(keep, mask.shape[0], None, q.shape[2], mask.shape[1], device=q.device)
            block_mask = cache[key]
        return compiled(q, k, v, block_mask=block_mask)

    return fn


def _impls():
    from torch.nn.attention import SDPBackend

    from tritonvision.kernels.triton_attention import fused_attention

    impls = [("ours (triton)", lambda q, k, v, m: fused_attention(q, k, v, m, backend="triton"))]
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name, None)
        if backend is not None:
            impls.append((f"sdpa {name.lower()}", _sdpa(backend)))
    try:
        impls.append(("flex (compiled)", _flex()))
    except Exception as exc:  # noqa: BLE001 - an older torch without FlexAttention is a result, not an error
        print(f"FlexAttention unavailable: {exc}", file=sys.stderr)
    impls.append(("eager", _eager))
    return impls


def _time(fn, q, k, v, mask, mode):
    if mode == "fwd":
        with torch.no_grad():
            fn(q, k, v, mask)  # warm-up: autotuning / compilation outside the timed region
            return do_bench(lambda: fn(q, k, v, mask), return_mode="median")
    grad = torch.randn_like(q)

    def step():
        fn(q, k, v, mask).backward(grad)

    step()
    return do_bench(step, grad_to_none=[q, k, v], return_mode="median")


def _matmul_peak(dtype):
    """A large bf16 GEMM as the achievable-peak yardstick (TFLOP/s)."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    ms = do_bench(lambda: a @ b, return_mode="median")
    return 2 * n**3 / ms / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table as markdown to this file")
    parser.add_argument("--cases", help="comma-separated subset of: " + ",".join(c[0] for c in CASES))
    parser.add_argument("--modes", default="fwd,fwd+bwd", help="fwd, fwd+bwd or both (default)")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available() or triton is None:
        print("benchmarks/attention.py needs a CUDA GPU and triton; nothing to measure here.")
        return 0

    dtype = torch.bfloat16
    cases = [c for c in CASES if not args.cases or c[0] in args.cases.split(",")]
    modes = args.modes.split(",")
    peak = _matmul_peak(dtype)
    header = [
        f"# Attention benchmark ({dtype}, median of triton.testing.do_bench)",
        "",
        f"- device: {torch.cuda.get_device_name()}",
        f"- torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- measured bf16 matmul peak (8192^3): {peak:.1f} TFLOP/s",
        "- ratio = impl ms / ours ms (above 1: ours is faster)",
        "",
    ]
    rows = []
    impls = _impls()
    for name, B, H, Nq, Nk, D, ragged in cases:
        torch.manual_seed(0)
        q = torch.randn(B, H, Nq, D, device="cuda", dtype=dtype, requires_grad=True)
        k = torch.randn(B, H, Nk, D, device="cuda", dtype=dtype, requires_grad=True)
        v = torch.randn(B, H, Nk, D, device="cuda", dtype=dtype, requires_grad=True)
        mask = _ragged_mask(B, Nk, "cuda") if ragged else None
        shape = f"{name} B={B} H={H} {Nq}x{Nk} D={D}{' ragged' if ragged else ''}"
        for mode in modes:
            flops = 4 * B * H * Nq * Nk * D * (2.5 if mode == "fwd+bwd" else 1.0)
            ours_ms = None
            for impl_name, fn in impls:
                try:
                    ms = _time(fn, q, k, v, mask, mode)
                except Exception as exc:  # noqa: BLE001 - a backend refusing the case is reported as n/a
                    rows.append((shape, mode, impl_name, None, None, None, None, type(exc).__name__))
                    continue
                finally:
                    torch.cuda.empty_cache()
                if ours_ms is None and impl_name.startswith("ours"):
                    ours_ms = ms
                tflops = flops / ms / 1e9
                ratio = ms / ours_ms if ours_ms else math.nan
                rows.append((shape, mode, impl_name, ms, ratio, tflops, 100 * tflops / peak, ""))
                print(f"{shape:45s} {mode:8s} {impl_name:26s} {ms:9.3f} ms", file=sys.stderr)

    lines = header + [
        "| case | mode | impl | ms | ratio vs ours | TFLOP/s | % peak |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for shape, mode, impl_name, ms, ratio, tflops, pct, why in rows:
        if ms is None:
            lines.append(f"| {shape} | {mode} | {impl_name} | n/a ({why}) | | | |")
        else:
            lines.append(f"| {shape} | {mode} | {impl_name} | {ms:.3f} | {ratio:.2f} | {tflops:.1f} | {pct:.0f}% |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
