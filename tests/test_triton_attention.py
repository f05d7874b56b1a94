"""Tests for the fused attention kernels and operators (`kernels/triton_attention.py`).

Without a GPU the Triton path runs under `TRITON_INTERPRET=1` (set by conftest.py), so shapes stay small.
Everything is compared against a float64 attention written here, independent of the module's reference.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import tritonvision.kernels.triton_attention as ta
from tritonvision.kernels.triton_attention import fused_attention

HAS_CUDA = torch.cuda.is_available()
TRITON_OK = ta.HAS_TRITON and (HAS_CUDA or os.environ.get("TRITON_INTERPRET") == "1")
needs_triton = pytest.mark.skipif(not TRITON_OK, reason="triton kernels need CUDA or TRITON_INTERPRET=1")
DEV = "cuda" if HAS_CUDA else "cpu"


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def attention_f64(q, k, v, mask, scale):
    """Textbook attention in float64; fully padded rows give zeros (and no NaN in the backward)."""
    s = torch.matmul(q.double(), k.double().transpose(-1, -2)) * scale
    if mask is not None:
        m = mask[:, None, None, :]
        s = s.masked_fill(m, float("-inf"))
        dead = m.all(-1, keepdim=True)
        s = torch.where(dead, torch.zeros_like(s), s)
        p = torch.where(dead, torch.zeros_like(s), torch.softmax(s, -1))
    else:
        p = torch.softmax(s, -1)
    return torch.matmul(p, v.double())


def attention_lowp(q, k, v, mask, scale):
    """Eager attention in the inputs' own dtype: PyTorch's own low-precision error, the baseline to beat."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        m = mask[:, None, None, :]
        dead = m.all(-1, keepdim=True)
        s = torch.where(dead, torch.zeros_like(s), s.masked_fill(m, float("-inf")))
        p = torch.where(dead, torch.zeros_like(s), torch.softmax(s, -1))
    else:
        p = torch.softmax(s, -1)
    return torch.matmul(p, v)


def make_mask(kind, B, Nk):
    if kind == "none":
        return None
    mask = torch.zeros(B, Nk, dtype=torch.bool)
    for b in range(B):
        keep = max(1, Nk - (b * 7 + 3) % max(Nk, 1))  # ragged: a different valid length per item
        mask[b, keep:] = True
    if kind == "full_item":
        mask[-1] = True
    return mask.to(DEV)


def make_inputs(B, H, Nq, Nk, D, dtype, layout="contiguous"):
    if layout == "fused_qkv":
        assert Nq == Nk
        qkv = torch.randn(B, Nq, 3, H, D, device=DEV, dtype=dtype)
        q, k, v = (qkv[:, :, i].permute(0, 2, 1, 3) for i in range(3))
        assert not q.is_contiguous()
    else:
        q = torch.randn(B, H, Nq, D, device=DEV, dtype=dtype)
        k = torch.randn(B, H, Nk, D, device=DEV, dtype=dtype)
        v = torch.randn(B, H, Nk, D, device=DEV, dtype=dtype)
    return [t.detach().requires_grad_(True) for t in (q, k, v)]


def run(fn, q, k, v, grad_out):
    for t in (q, k, v):
        t.grad = None
    out = fn(q, k, v)
    out.backward(grad_out)
    return [out.detach()] + [t.grad.detach().clone() for t in (q, k, v)]


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def check_case(B, H, Nq, Nk, D, dtype, mask_kind, layout="contiguous", backend="triton"):
    q, k, v = make_inputs(B, H, Nq, Nk, D, dtype, layout)
    mask = make_mask(mask_kind, B, Nk)
    scale = D**-0.5
    grad_out = torch.randn(B, H, Nq, D, device=DEV, dtype=dtype)
    ours = run(lambda a, b, c: fused_attention(a, b, c, mask, backend=backend), q, k, v, grad_out)
    ref = run(lambda a, b, c: attention_f64(a, b, c, mask, scale), q, k, v, grad_out)
    names = ("out", "dq", "dk", "dv")
    for name, got in zip(names, ours):
        assert got.dtype == dtype, name
        assert torch.isfinite(got).all(), f"{name} has non-finite values"
    if dtype == torch.float32:
        for name, got, want in zip(names, ours, ref):
            atol = 1e-4 * (1 + want.abs().max().item())
            torch.testing.assert_close(
                got.double(), want.double(), rtol=1e-4, atol=atol, msg=lambda m, n=name: f"{n}: {m}"
            )
    else:
        base = run(lambda a, b, c: attention_lowp(a, b, c, mask, scale), q, k, v, grad_out)
        for name, got, want, torch_lowp in zip(names, ours, ref, base):
            limit = 2 * max_err(torch_lowp, want) + 1e-3 * (1 + want.abs().max().item())
            assert max_err(got, want) <= limit, f"{name}: error {max_err(got, want):.3g} > limit {limit:.3g}"
    if mask is not None and mask_kind == "full_item":
        for name, got in zip(names, ours):  # output, dq, dk and dv of that item are all exactly zero
            assert torch.count_nonzero(got[-1]) == 0, f"{name} of the fully padded item must be exactly zero"


@pytest.fixture
def poisoned_buffers(monkeypatch):
    """Every kernel output starts as NaN, so an element the kernels forget to write fails the finiteness check."""

    def nan_buffer(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(ta, "_new_buffer", nan_buffer)


# ----------------------------------------------------------------------------------------------------------
# Triton path (interpreter on CPU)
# ----------------------------------------------------------------------------------------------------------


@needs_triton
@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_dtypes_ragged(dtype, poisoned_buffers):
    check_case(2, 2, 70, 70, 64, dtype, "ragged")


@needs_triton
@pytest.mark.interpret
@pytest.mark.parametrize(
    "B,H,Nq,Nk,D,mask_kind",
    [
        (1, 1, 1, 1, 32, "none"),
        (2, 1, 1, 17, 64, "ragged"),
        (2, 2, 17, 17, 59, "none"),
        (3, 2, 37, 45, 40, "full_item"),
        (2, 2, 100, 70, 32, "ragged"),
        (1, 1, 197, 197, 64, "none"),
        (3, 1, 33, 33, 32, "full_item"),
    ],
)
def test_triton_shapes_masks(B, H, Nq, Nk, D, mask_kind, poisoned_buffers):
    check_case(B, H, Nq, Nk, D, torch.float32, mask_kind)


@needs_triton
@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_noncontiguous_fused_qkv(dtype, poisoned_buffers):
    check_case(2, 3, 50, 50, 32, dtype, "ragged", layout="fused_qkv")


@needs_triton
@pytest.mark.interpret
def test_triton_fp16_full_item(poisoned_buffers):
    check_case(3, 1, 40, 40, 32, torch.float16, "full_item")


@needs_triton
@pytest.mark.interpret
def test_triton_lse_matches_reference(poisoned_buffers):
    q, k, v = (t.detach() for t in make_inputs(2, 2, 20, 30, 32, torch.float32))
    mask = make_mask("full_item", 2, 30)
    out_t, lse_t = torch.ops.tritonvision.attention_fwd(q, k, v, mask, 0.2, True)
    out_r, lse_r = torch.ops.tritonvision.attention_fwd(q, k, v, mask, 0.2, False)
    torch.testing.assert_close(out_t, out_r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lse_t, lse_r, rtol=1e-5, atol=1e-5)
    assert torch.isinf(lse_t[-1]).all() and (lse_t[-1] > 0).all()


# ----------------------------------------------------------------------------------------------------------
# Reference path
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mask_kind", ["none", "ragged", "full_item"])
def test_reference_path(dtype, mask_kind):
    check_case(3, 2, 23, 31, 40, dtype, mask_kind, backend="reference")


def test_reference_path_noncontiguous():
    check_case(2, 2, 29, 29, 59, torch.float32, "ragged", layout="fused_qkv", backend="reference")


def test_custom_scale_and_dispatch_spy(monkeypatch):
    """backend='auto' on CPU without TRITONVISION_FORCE_TRITON must not reach the Triton launchers."""
    if HAS_CUDA:
        pytest.skip("auto picks Triton on CUDA")
    monkeypatch.delenv("TRITONVISION_FORCE_TRITON", raising=False)
    calls = []

    def spy(*args):
        calls.append(args)
        raise AssertionError("Triton launcher reached")

    monkeypatch.setattr(ta, "_triton_forward", spy)
    monkeypatch.setattr(ta, "_triton_backward", spy)
    q, k, v = make_inputs(1, 2, 5, 7, 16, torch.float32)
    out = fused_attention(q, k, v, scale=0.3)
    out.sum().backward()
    assert not calls
    torch.testing.assert_close(out.double(), attention_f64(q, k, v, None, 0.3), rtol=1e-5, atol=1e-6)


@needs_triton
def test_auto_force_env_uses_triton(monkeypatch):
    if HAS_CUDA:
        pytest.skip("CPU-only dispatch rule")
    monkeypatch.setenv("TRITONVISION_FORCE_TRITON", "1")
    calls = []
    real = ta._triton_forward

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(ta, "_triton_forward", spy)
    q, k, v = make_inputs(1, 1, 5, 7, 16, torch.float32)
    fused_attention(q, k, v)
    assert calls


def test_triton_backend_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k, v = make_inputs(1, 1, 4, 4, 16, torch.float32)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET|triton"):
        fused_attention(q.cpu(), k.cpu(), v.cpu(), backend="triton")


# ----------------------------------------------------------------------------------------------------------
# Operators
# ----------------------------------------------------------------------------------------------------------


def _op_args(use_triton, mask_kind, dtype=torch.float32):
    q, k, v = make_inputs(2, 2, 9, 11, 16, dtype)
    mask = make_mask(mask_kind, 2, 11)
    return q, k, v, mask, 0.25, use_triton


def _bwd_args(fwd_args):
    q, k, v, mask, scale, use_triton = fwd_args
    with torch.no_grad():
        out, lse = torch.ops.tritonvision.attention_fwd(q, k, v, mask, scale, use_triton)
    grad = torch.randn_like(out)
    return grad, q.detach(), k.detach(), v.detach(), out, lse, mask, scale, use_triton


@pytest.mark.parametrize("use_triton", [False, pytest.param(True, marks=needs_triton)])
@pytest.mark.parametrize("mask_kind", ["none", "full_item"])
def test_opcheck(use_triton, mask_kind):
    fwd_args = _op_args(use_triton, mask_kind)
    torch.library.opcheck(torch.ops.tritonvision.attention_fwd.default, fwd_args)
    torch.library.opcheck(torch.ops.tritonvision.attention_bwd.default, _bwd_args(fwd_args))


def test_ops_have_fake_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(2, 3, 5, 8, dtype=torch.bfloat16)
        k = torch.empty(2, 3, 7, 8, dtype=torch.bfloat16)
        out, lse = torch.ops.tritonvision.attention_fwd(q, k, k, None, 0.5, True)
        assert out.shape == (2, 3, 5, 8) and out.dtype == torch.bfloat16
        assert lse.shape == (2, 3, 5) and lse.dtype == torch.float32
        dq, dk, dv = torch.ops.tritonvision.attention_bwd(out, q, k, k, out, lse, None, 0.5, True)
        assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == k.shape


# ----------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------


def _good():
    q = torch.randn(2, 3, 5, 16)
    k = torch.randn(2, 3, 7, 16)
    return q, k, k.clone(), torch.zeros(2, 7, dtype=torch.bool)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda q, k, v, m: (q[0], k, v, m), "rank"),
        (lambda q, k, v, m: (q, k[:1], v[:1], m), "batch"),
        (lambda q, k, v, m: (q, k[:, :2], v[:, :2], m), "heads"),
        (lambda q, k, v, m: (q, k[..., :8], v[..., :8], m), "head dim"),
        (lambda q, k, v, m: (q, k, v[:, :, :6], m), "same number of keys"),
        (lambda q, k, v, m: (q.double(), k.double(), v.double(), m), "dtype"),
        (lambda q, k, v, m: (q.half(), k, v, m), "share a dtype"),
        (lambda q, k, v, m: (q, k, v, m.float()), "bool"),
        (lambda q, k, v, m: (q, k, v, m[:, :5]), r"\(B, Nk\)"),
        (lambda q, k, v, m: (torch.randn(2, 3, 5, 160), torch.randn(2, 3, 7, 160), torch.randn(2, 3, 7, 160), m),
         "head dim 160"),
    ],
)  # fmt: skip
def test_validation_errors(mutate, match):
    args = mutate(*_good())
    with pytest.raises(ValueError, match=match):
        fused_attention(*args, backend="reference")


def test_validation_backend_and_device():
    q, k, v, m = _good()
    with pytest.raises(ValueError, match="backend"):
        fused_attention(q, k, v, m, backend="cuda")
    with pytest.raises(ValueError, match="device"):
        fused_attention(q, k.to("meta"), v, m, backend="reference")


# ----------------------------------------------------------------------------------------------------------
# Flat copy: double import, and import without triton
# ----------------------------------------------------------------------------------------------------------


def _flat_copy(tmp_path):
    pkg = tmp_path / "flatcopy_attn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    kernels = os.path.dirname(ta.__file__)
    for name in ("triton_attention.py", "triton_attention_kernels.py"):
        shutil.copy(os.path.join(kernels, name), pkg / name)
    return pkg


def test_flat_copy_double_import(tmp_path, monkeypatch):
    _flat_copy(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("flatcopy_attn.triton_attention")
    assert mod is not ta
    q, k, v = make_inputs(1, 2, 6, 6, 16, torch.float32)
    torch.testing.assert_close(
        mod.fused_attention(q, k, v, backend="reference"), fused_attention(q, k, v, backend="reference")
    )


def test_import_without_triton(tmp_path):
    _flat_copy(tmp_path)
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import torch
        from flatcopy_attn.triton_attention import fused_attention
        q = torch.randn(1, 2, 4, 8, requires_grad=True)
        out = fused_attention(q, q, q)
        out.sum().backward()
        assert torch.isfinite(q.grad).all()
        try:
            fused_attention(q, q, q, backend="triton")
        except RuntimeError as e:
            assert "triton" in str(e)
        else:
            raise SystemExit("expected RuntimeError")
        print("OK")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0 and "OK" in res.stdout, res.stderr[-2000:]


# ----------------------------------------------------------------------------------------------------------
# Real shapes on a GPU
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    "B,H,Nq,Nk,D,mask_kind",
    [
        (8, 12, 197, 197, 64, "none"),
        (2, 12, 577, 577, 64, "none"),
        (4, 6, 197, 197, 64, "none"),
        (2, 8, 1100, 1100, 32, "ragged"),
        (2, 8, 100, 1100, 32, "ragged"),
        (2, 8, 100, 1100, 32, "full_item"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_gpu_real_shapes(B, H, Nq, Nk, D, mask_kind, dtype, poisoned_buffers):
    check_case(B, H, Nq, Nk, D, dtype, mask_kind)
