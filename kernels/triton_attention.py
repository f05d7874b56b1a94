"""Fused multi-head attention: Triton kernels behind `torch.library` custom operators, with a PyTorch reference.

Public entry point::

    fused_attention(q, k, v, key_padding_mask=None, scale=None, backend="auto") -> Tensor

`q` is `(B, H, Nq, D)`, `k`/`v` are `(B, H, Nk, D)` with any strides; `key_padding_mask` is a bool `(B, Nk)`
tensor where True marks a padded key. A query whose keys are all padded gets zeros (and zero gradients).

Backend switch (`backend=`):
  * ``"auto"``: the Triton kernels when the tensors are on CUDA and triton imports, or when the environment
    variable ``TRITONVISION_FORCE_TRITON=1`` is set (then CPU tensors run the kernels under Triton's
    interpreter, which needs ``TRITON_INTERPRET=1`` set before this module is imported); otherwise the
    PyTorch reference.
  * ``"triton"``: always the kernels; `RuntimeError` if triton is missing, or if the tensors are on the CPU
    and ``TRITON_INTERPRET=1`` is not set.
  * ``"reference"``: always the PyTorch path (float32 math with a log-sum-exp, same padding semantics).

Operators (namespace ``tritonvision``), each taking an explicit ``use_triton`` flag chosen by
`fused_attention` so the op itself never reads the environment:
  * ``torch.ops.tritonvision.attention_fwd(q, k, v, mask, scale, use_triton) -> (out, lse)``
  * ``torch.ops.tritonvision.attention_bwd(grad_out, q, k, v, out, lse, mask, scale, use_triton)
    -> (dq, dk, dv)``
`lse` is float32 `(B, H, Nq)` in natural-log units, `+inf` for fully padded queries. The forward op has an
autograd formula that calls the backward op. The CUDA path never synchronises with the host, so both ops
can be captured in CUDA graphs once the autotuners have been warmed up outside the capture.

This file may be imported twice in one process (installed package and a flat trust_remote_code copy): the
ops are registered only by the first copy, and `fused_attention` always calls them through `torch.ops`.
"""

import math
import os

import torch

from .triton_attention_kernels import HAS_TRITON, INTERPRET, LOG2E, triton

if HAS_TRITON:
    from .triton_attention_kernels import (
        attn_bwd_delta_kernel,
        attn_bwd_dkdv_kernel,
        attn_bwd_dq_kernel,
        attn_fwd_kernel,
    )

__all__ = ["MAX_HEAD_DIM", "attention_reference", "fused_attention"]

MAX_HEAD_DIM = 128
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_BACKENDS = ("auto", "triton", "reference")
_NS = "tritonvision"
_FWD_NAME = "attention_fwd"
_BWD_NAME = "attention_bwd"


# ----------------------------------------------------------------------------------------------------------
# PyTorch reference (float32 math); also the CPU implementation of the ops.
# ----------------------------------------------------------------------------------------------------------


def _ref_scores(q, k, mask, scale):
    """float32 scores with padded keys at -inf, `(B, H, Nq, Nk)`."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(mask[:, None, None, :], float("-inf"))
    return s


def _ref_forward(q, k, v, mask, scale):
    """Returns `(out, lse)` with the kernel's conventions (lse = +inf on fully padded rows)."""
    s = _ref_scores(q, k, mask, scale)
    lse = torch.logsumexp(s, dim=-1)
    lse = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)
    p = torch.exp(s - lse.unsqueeze(-1))  # -inf - x and x - inf both give exactly 0
    out = torch.matmul(p, v.float())
    return out.to(q.dtype), lse


def _ref_backward(grad_out, q, k, v, out, lse, mask, scale):
    """Gradients recomputed from lse, mirroring the Triton backward."""
    s = _ref_scores(q, k, mask, scale)
    p = torch.exp(s - lse.unsqueeze(-1))
    g = grad_out.float()
    dv = torch.matmul(p.transpose(-1, -2), g)
    dp = torch.matmul(g, v.float().transpose(-1, -2))
    delta = (g * out.float()).sum(-1, keepdim=True)
    ds = p * (dp - delta)
    dq = torch.matmul(ds, k.float()) * scale
    dk = torch.matmul(ds.transpose(-1, -2), q.float()) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def attention_reference(q, k, v, key_padding_mask=None, scale=None):
    """Plain differentiable PyTorch attention with the same semantics, for tests and debugging."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    s = _ref_scores(q, k, key_padding_mask, scale)
    lse = torch.logsumexp(s, dim=-1, keepdim=True)
    lse = torch.where(torch.isneginf(lse), torch.full_like(lse, float("inf")), lse)
    return torch.matmul(torch.exp(s - lse), v.float()).to(q.dtype)


# ----------------------------------------------------------------------------------------------------------
# Triton launchers.
# ----------------------------------------------------------------------------------------------------------


def _new_buffer(shape, dtype, device):
    """Output allocation; a seam so tests can pre-fill buffers with NaN and prove every element is written."""
    return torch.empty(shape, dtype=dtype, device=device)


def _block_d(head_dim):
    """Head dims are padded to a power of two (at least 16, the smallest `tl.dot` tile); loads are masked."""
    return max(16, triton.next_power_of_2(head_dim))


def _precision(dtype):
    """float32 inputs use full-precision dots; TF32 would cost ~1e-3 relative error."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _mask_args(mask, q):
    """A uint8 view of the bool mask (no copy) and its strides; a 1-element dummy when there is no mask."""
    if mask is None:
        return q, 0, 0, False
    m = mask.view(torch.uint8)
    return m, m.stride(0), m.stride(1), True


def _triton_forward(q, k, v, mask, scale):
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    out = _new_buffer((B, H, Nq, D), q.dtype, q.device)
    lse = _new_buffer((B, H, Nq), torch.float32, q.device)
    if out.numel() == 0:
        return out, lse
    m, s_mb, s_mn, has_mask = _mask_args(mask, q)

    def grid(meta):
        return (triton.cdiv(Nq, meta["BLOCK_M"]), B * H)

    attn_fwd_kernel[grid](
        q, k, v, m, out, lse,
        *q.stride(), *k.stride(), *v.stride(), s_mb, s_mn, *out.stride(),
        H, Nq, Nk, D, scale * LOG2E,
        HAS_MASK=has_mask, DOT_PRECISION=_precision(q.dtype), UPCAST_DOT=INTERPRET, BLOCK_D=_block_d(D),
    )  # fmt: skip
    return out, lse


def _triton_backward(grad_out, q, k, v, out, lse, mask, scale):
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    dq = _new_buffer((B, H, Nq, D), q.dtype, q.device)
    dk = _new_buffer((B, H, Nk, D), k.dtype, q.device)
    dv = _new_buffer((B, H, Nk, D), v.dtype, q.device)
    if Nk > 0 and dq.numel() == 0:
        dk.zero_()
        dv.zero_()
    if dq.numel() == 0 or dk.numel() == 0:
        return dq.zero_(), dk, dv
    lse = lse.contiguous()
    delta = _new_buffer((B, H, Nq), torch.float32, q.device)
    m, s_mb, s_mn, has_mask = _mask_args(mask, q)
    block_d = _block_d(D)
    precision = _precision(q.dtype)
    delta_rows = 16 if os.environ.get("TRITON_INTERPRET", "0") == "1" else 64

    attn_bwd_delta_kernel[(triton.cdiv(Nq, delta_rows), B * H)](
        out, grad_out, delta, *out.stride(), *grad_out.stride(), H, Nq, D,
        BLOCK_D=block_d, BLOCK_M=delta_rows,
    )  # fmt: skip

    def grid_kv(meta):
        return (triton.cdiv(Nk, meta["BLOCK_N"]), B * H)

    attn_bwd_dkdv_kernel[grid_kv](
        q, k, v, m, grad_out, lse, delta, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), s_mb, s_mn, *grad_out.stride(), *dk.stride(),
        H, Nq, Nk, D, scale, scale * LOG2E,
        HAS_MASK=has_mask, DOT_PRECISION=precision, UPCAST_DOT=INTERPRET, BLOCK_D=block_d,
    )  # fmt: skip

    def grid_q(meta):
        return (triton.cdiv(Nq, meta["BLOCK_M"]), B * H)

    attn_bwd_dq_kernel[grid_q](
        q, k, v, m, grad_out, lse, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), s_mb, s_mn, *grad_out.stride(), *dq.stride(),
        H, Nq, Nk, D, scale, scale * LOG2E,
        HAS_MASK=has_mask, DOT_PRECISION=precision, UPCAST_DOT=INTERPRET, BLOCK_D=block_d,
    )  # fmt: skip
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------------------
# Custom operators (registered once per process, whichever copy of this file comes first).
# ----------------------------------------------------------------------------------------------------------


def _op_impl_fwd(q, k, v, mask, scale, use_triton):
    if use_triton:
        return _triton_forward(q, k, v, mask, scale)
    return _ref_forward(q, k, v, mask, scale)


def _op_impl_bwd(grad_out, q, k, v, out, lse, mask, scale, use_triton):
    if use_triton:
        return _triton_backward(grad_out, q, k, v, out, lse, mask, scale)
    return _ref_backward(grad_out, q, k, v, out, lse, mask, scale)


def _fake_fwd(q, k, v, mask, scale, use_triton):
    B, H, Nq, D = q.shape
    return q.new_empty((B, H, Nq, D)), q.new_empty((B, H, Nq), dtype=torch.float32)


def _fake_bwd(grad_out, q, k, v, out, lse, mask, scale, use_triton):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, mask, scale, use_triton = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, mask)
    ctx.scale = scale
    ctx.use_triton = use_triton


def _backward(ctx, grad_out, grad_lse):
    """Gradient of `out` only: `lse` is an auxiliary output, its gradient is not propagated."""
    q, k, v, out, lse, mask = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = getattr(torch.ops, _NS).attention_bwd(grad_out, q, k, v, out, lse, mask, ctx.scale, ctx.use_triton)
    return dq, dk, dv, None, None, None


def _ops_registered():
    try:
        ns = getattr(torch.ops, _NS)
        return hasattr(ns, _FWD_NAME) and hasattr(ns, _BWD_NAME)
    except (AttributeError, RuntimeError):
        return False


def _register_ops():
    """Defines both ops with `torch.library.custom_op` (opaque to torch.compile, safe for CUDA graphs)."""
    if _ops_registered():
        return
    fwd = torch.library.custom_op(f"{_NS}::{_FWD_NAME}", mutates_args=())(_typed_fwd)
    bwd = torch.library.custom_op(f"{_NS}::{_BWD_NAME}", mutates_args=())(_typed_bwd)
    fwd.register_fake(_fake_fwd)
    bwd.register_fake(_fake_bwd)
    fwd.register_autograd(_backward, setup_context=_setup_context)
    _REGISTERED.extend([fwd, bwd])  # keep the CustomOpDef objects alive


def _typed_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float, use_triton: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    return _op_impl_fwd(q, k, v, mask, scale, use_triton)


def _typed_bwd(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    use_triton: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _op_impl_bwd(grad_out, q, k, v, out, lse, mask, scale, use_triton)


_REGISTERED = []
_register_ops()


# ----------------------------------------------------------------------------------------------------------
# Public entry point.
# ----------------------------------------------------------------------------------------------------------


def _check_inputs(q, k, v, key_padding_mask):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, N, D); got rank {t.dim()} with shape {tuple(t.shape)}")
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name} has dtype {t.dtype}; supported: float16, bfloat16, float32")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device; got {q.device}, {k.device}, {v.device}")
    B, H, _, D = q.shape
    for name, t in (("k", k), ("v", v)):
        if t.shape[0] != B or t.shape[1] != H or t.shape[3] != D:
            raise ValueError(
                f"{name} shape {tuple(t.shape)} does not match q {tuple(q.shape)} in batch, heads or head dim"
            )
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"k and v must have the same number of keys; got {k.shape[2]} and {v.shape[2]}")
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ValueError(f"head dim {D} unsupported; must be between 1 and {MAX_HEAD_DIM}")
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            got = getattr(key_padding_mask, "dtype", type(key_padding_mask).__name__)
            raise ValueError(f"key_padding_mask must be a bool tensor (True = padded key); got {got}")
        if tuple(key_padding_mask.shape) != (B, k.shape[2]):
            raise ValueError(
                f"key_padding_mask must have shape (B, Nk) = {(B, k.shape[2])}; got {tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device} but q is on {q.device}")


def _interpreting():
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _resolve_backend(backend, device):
    """Returns True when the Triton kernels should run."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}; got {backend!r}")
    if backend == "reference":
        return False
    if backend == "auto":
        if not HAS_TRITON:
            return False
        if device.type == "cuda":
            return True
        return os.environ.get("TRITONVISION_FORCE_TRITON", "0") == "1" and _interpreting()
    if not HAS_TRITON:
        raise RuntimeError("backend='triton' requested but triton is not installed")
    if device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"backend='triton' with tensors on {device} needs TRITON_INTERPRET=1 set before the kernels are "
            "imported (Triton's CPU interpreter); move the tensors to CUDA or use backend='reference'"
        )
    return True


def fused_attention(q, k, v, key_padding_mask=None, scale=None, backend="auto"):
    """softmax(q k^T * scale, padded keys excluded) v, differentiable in q, k and v.

    Shapes: q `(B, H, Nq, D)`, k/v `(B, H, Nk, D)`, key_padding_mask bool `(B, Nk)` (True = ignore).
    Returns `(B, H, Nq, D)` in q's dtype; fully padded query rows are exactly zero.
    """
    _check_inputs(q, k, v, key_padding_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite; got {scale}")
    use_triton = _resolve_backend(backend, q.device)
    out, _ = getattr(torch.ops, _NS).attention_fwd(q, k, v, key_padding_mask, scale, use_triton)
    return out
