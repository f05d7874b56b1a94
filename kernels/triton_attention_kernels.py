"""Raw Triton kernels for fused multi-head attention (forward, backward preprocess, dK/dV, dQ).

Kept apart from the launchers in `triton_attention.py` so each file stays readable. This module imports
only torch/stdlib/triton; without triton it still imports and exposes `HAS_TRITON = False`.

Conventions shared by every kernel:
  * one program handles one tile of rows for one (batch, head) pair: grid = (row tiles, B * H);
  * scores are kept in base-2 units (`qk_scale = scale * log2(e)`) so `exp2` can be used;
  * the saved log-sum-exp is in natural-log units, float32, `(B, H, N_Q)`, and is `+inf` for a query whose
    keys are all padded, which makes every recomputed probability of that row exactly zero;
  * the key padding mask is a `(B, N_K)` uint8 view of the bool mask (1 = padded key);
  * batch/head offsets are computed in int64 because `b * stride_b` can exceed 2**31.
"""

import os

try:
    import triton
    import triton.language as tl
except ImportError:  # the reference path in triton_attention.py still works
    triton = None
    tl = None

HAS_TRITON = triton is not None
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _configs(pairs, interpret_pair):
    """Autotune configs: a Hopper-sensible sweep on a GPU, one small tile under the interpreter.

    The interpreter has no driver to benchmark with, so it must see exactly one config.
    """
    if INTERPRET:
        bm, bn = interpret_pair
        return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=4, num_stages=1)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in pairs]


if HAS_TRITON:
    # (BLOCK_M, BLOCK_N, num_warps, num_stages); BLOCK_M = query tile, BLOCK_N = key tile.
    _FWD_CONFIGS = _configs(
        [
            (128, 64, 4, 3),
            (128, 64, 8, 3),
            (128, 128, 8, 3),
            (128, 32, 4, 4),
            (64, 64, 4, 3),
            (64, 64, 4, 4),
            (64, 128, 4, 2),
            (64, 32, 4, 4),
        ],
        (32, 32),
    )
    # The dK/dV kernel owns a key tile (BLOCK_N) and walks query tiles (BLOCK_M).
    _DKDV_CONFIGS = _configs(
        [
            (32, 64, 4, 3),
            (64, 64, 4, 3),
            (64, 64, 8, 2),
            (32, 128, 4, 2),
            (64, 128, 8, 2),
            (64, 32, 4, 3),
        ],
        (32, 32),
    )
    # The dQ kernel owns a query tile (BLOCK_M) and walks key tiles (BLOCK_N).
    _DQ_CONFIGS = _configs(
        [
            (64, 32, 4, 3),
            (64, 64, 4, 3),
            (128, 32, 4, 3),
            (128, 64, 8, 2),
            (64, 128, 8, 2),
            (128, 64, 4, 3),
        ],
        (32, 32),
    )
    _KEY = ["N_Q", "N_K", "HEAD_DIM", "BLOCK_D", "HAS_MASK", "DOT_PRECISION"]

    @triton.jit
    def _mma(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        """`a @ b (+ acc)` with float32 accumulation.

        UPCAST (interpreter only) widens the already-rounded operands to float32 first: Triton 3.8's interpreter
        returns garbage for a bfloat16 `tl.dot`. The operands keep their low-precision rounding, so the result
        matches the GPU's up to summation order.
        """
        if UPCAST:
            if acc is None:
                return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        if acc is None:
            return tl.dot(a, b, input_precision=PRECISION)
        return tl.dot(a, b, acc, input_precision=PRECISION)

    @triton.autotune(configs=_FWD_CONFIGS, key=_KEY)
    @triton.jit
    def attn_fwd_kernel(
        Q,  # (B, H, N_Q, HEAD_DIM), any strides
        K,  # (B, H, N_K, HEAD_DIM), any strides
        V,  # (B, H, N_K, HEAD_DIM), any strides
        MASK,  # (B, N_K) uint8, 1 = padded key; a dummy pointer when HAS_MASK is False
        OUT,  # (B, H, N_Q, HEAD_DIM), written in Q's dtype
        LSE,  # (B, H, N_Q) float32, contiguous
        s_qb, s_qh, s_qm, s_qd,
        s_kb, s_kh, s_kn, s_kd,
        s_vb, s_vh, s_vn, s_vd,
        s_mb, s_mn,
        s_ob, s_oh, s_om, s_od,
        H, N_Q, N_K, HEAD_DIM,
        qk_scale,  # softmax scale * log2(e)
        HAS_MASK: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
        UPCAST_DOT: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        h = (pid_bh % H).to(tl.int64)
        q_base = Q + b * s_qb + h * s_qh
        k_base = K + b * s_kb + h * s_kh
        v_base = V + b * s_vb + h * s_vh
        m_base = MASK + b * s_mb

        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, BLOCK_D)
        row_ok = rows < N_Q
        dim_ok = dims < HEAD_DIM
        q = tl.load(
            q_base + rows[:, None] * s_qm + dims[None, :] * s_qd,
            mask=row_ok[:, None] & dim_ok[None, :],
            other=0.0,
        )

        run_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        run_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for start in range(0, N_K, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            in_range = cols < N_K
            keep = in_range
            if HAS_MASK:
                padded = tl.load(m_base + cols * s_mn, mask=in_range, other=1)
                keep = keep & (padded == 0)
            # K is read transposed, (BLOCK_D, BLOCK_N), so the score tile is a plain dot.
            k_t = tl.load(
                k_base + cols[None, :] * s_kn + dims[:, None] * s_kd,
                mask=in_range[None, :] & dim_ok[:, None],
                other=0.0,
            )
            scores = _mma(q, k_t, None, DOT_PRECISION, UPCAST_DOT) * qk_scale
            scores = tl.where(keep[None, :], scores, float("-inf"))
            new_max = tl.maximum(run_max, tl.max(scores, 1))
            # A row that has seen only padded keys keeps max = -inf; shift by 0 there to avoid inf - inf.
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            p = tl.math.exp2(scores - shift[:, None])
            rescale = tl.math.exp2(run_max - shift)
            run_sum = run_sum * rescale + tl.sum(p, 1)
            v = tl.load(
                v_base + cols[:, None] * s_vn + dims[None, :] * s_vd,
                mask=in_range[:, None] & dim_ok[None, :],
                other=0.0,
            )
            acc = acc * rescale[:, None]
            acc = _mma(p.to(v.dtype), v, acc, DOT_PRECISION, UPCAST_DOT)
            run_max = new_max

        empty = run_sum == 0.0
        denom = tl.where(empty, 1.0, run_sum)
        out = acc / denom[:, None]
        lse = tl.where(empty, float("inf"), (run_max + tl.math.log2(denom)) * 0.6931471805599453)
        o_base = OUT + b * s_ob + h * s_oh
        tl.store(
            o_base + rows[:, None] * s_om + dims[None, :] * s_od,
            out.to(OUT.dtype.element_ty),
            mask=row_ok[:, None] & dim_ok[None, :],
        )
        tl.store(LSE + pid_bh.to(tl.int64) * N_Q + rows, lse, mask=row_ok)

    @triton.jit
    def attn_bwd_delta_kernel(
        OUT,  # (B, H, N_Q, HEAD_DIM), forward output
        DO,  # (B, H, N_Q, HEAD_DIM), incoming gradient, any strides
        DELTA,  # (B, H, N_Q) float32, contiguous: rowsum(dO * O)
        s_ob, s_oh, s_om, s_od,
        s_gb, s_gh, s_gm, s_gd,
        H, N_Q, HEAD_DIM,
        BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        h = (pid_bh % H).to(tl.int64)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, BLOCK_D)
        ok = (rows < N_Q)[:, None] & (dims < HEAD_DIM)[None, :]
        o = tl.load(OUT + b * s_ob + h * s_oh + rows[:, None] * s_om + dims[None, :] * s_od, mask=ok, other=0.0)
        g = tl.load(DO + b * s_gb + h * s_gh + rows[:, None] * s_gm + dims[None, :] * s_gd, mask=ok, other=0.0)
        delta = tl.sum(o.to(tl.float32) * g.to(tl.float32), 1)
        tl.store(DELTA + pid_bh.to(tl.int64) * N_Q + rows, delta, mask=rows < N_Q)

    @triton.autotune(configs=_DKDV_CONFIGS, key=_KEY)
    @triton.jit
    def attn_bwd_dkdv_kernel(
        Q,  # (B, H, N_Q, HEAD_DIM), any strides
        K,  # (B, H, N_K, HEAD_DIM), any strides
        V,  # (B, H, N_K, HEAD_DIM), any strides
        MASK,  # (B, N_K) uint8, 1 = padded key; dummy when HAS_MASK is False
        DO,  # (B, H, N_Q, HEAD_DIM), any strides
        LSE,  # (B, H, N_Q) float32, contiguous, natural log, +inf for fully padded rows
        DELTA,  # (B, H, N_Q) float32, contiguous
        DK,  # (B, H, N_K, HEAD_DIM), written in K's dtype
        DV,  # (B, H, N_K, HEAD_DIM), written in V's dtype (same strides as DK)
        s_qb, s_qh, s_qm, s_qd,
        s_kb, s_kh, s_kn, s_kd,
        s_vb, s_vh, s_vn, s_vd,
        s_mb, s_mn,
        s_gb, s_gh, s_gm, s_gd,
        s_db, s_dh, s_dn, s_dd,
        H, N_Q, N_K, HEAD_DIM,
        scale,  # softmax scale
        qk_scale,  # softmax scale * log2(e)
        HAS_MASK: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
        UPCAST_DOT: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_n = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        h = (pid_bh % H).to(tl.int64)
        q_base = Q + b * s_qb + h * s_qh
        g_base = DO + b * s_gb + h * s_gh
        stat_base = pid_bh.to(tl.int64) * N_Q

        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        dims = tl.arange(0, BLOCK_D)
        col_ok = cols < N_K
        dim_ok = dims < HEAD_DIM
        keep = col_ok
        if HAS_MASK:
            padded = tl.load(MASK + b * s_mb + cols * s_mn, mask=col_ok, other=1)
            keep = keep & (padded == 0)
        kv_ok = col_ok[:, None] & dim_ok[None, :]
        k = tl.load(K + b * s_kb + h * s_kh + cols[:, None] * s_kn + dims[None, :] * s_kd, mask=kv_ok, other=0.0)
        v = tl.load(V + b * s_vb + h * s_vh + cols[:, None] * s_vn + dims[None, :] * s_vd, mask=kv_ok, other=0.0)

        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        for start in range(0, N_Q, BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            row_ok = rows < N_Q
            qo_ok = row_ok[:, None] & dim_ok[None, :]
            q = tl.load(q_base + rows[:, None] * s_qm + dims[None, :] * s_qd, mask=qo_ok, other=0.0)
            g = tl.load(g_base + rows[:, None] * s_gm + dims[None, :] * s_gd, mask=qo_ok, other=0.0)
            # Out-of-range rows get lse = +inf so their probabilities vanish.
            lse = tl.load(LSE + stat_base + rows, mask=row_ok, other=float("inf")) * 1.4426950408889634
            delta = tl.load(DELTA + stat_base + rows, mask=row_ok, other=0.0)
            # Transposed tiles, (BLOCK_N, BLOCK_M): keys on rows, queries on columns.
            s_t = _mma(k, tl.trans(q), None, DOT_PRECISION, UPCAST_DOT) * qk_scale
            p_t = tl.math.exp2(s_t - lse[None, :])
            p_t = tl.where(keep[:, None], p_t, 0.0)
            dv = _mma(p_t.to(g.dtype), g, dv, DOT_PRECISION, UPCAST_DOT)
            dp_t = _mma(v, tl.trans(g), None, DOT_PRECISION, UPCAST_DOT)
            ds_t = p_t * (dp_t - delta[None, :])
            dk = _mma(ds_t.to(q.dtype), q, dk, DOT_PRECISION, UPCAST_DOT)

        dk = dk * scale
        d_off = b * s_db + h * s_dh + cols[:, None] * s_dn + dims[None, :] * s_dd
        tl.store(DK + d_off, dk.to(DK.dtype.element_ty), mask=kv_ok)
        tl.store(DV + d_off, dv.to(DV.dtype.element_ty), mask=kv_ok)

    @triton.autotune(configs=_DQ_CONFIGS, key=_KEY)
    @triton.jit
    def attn_bwd_dq_kernel(
        Q,  # (B, H, N_Q, HEAD_DIM), any strides
        K,  # (B, H, N_K, HEAD_DIM), any strides
        V,  # (B, H, N_K, HEAD_DIM), any strides
        MASK,  # (B, N_K) uint8, 1 = padded key; dummy when HAS_MASK is False
        DO,  # (B, H, N_Q, HEAD_DIM), any strides
        LSE,  # (B, H, N_Q) float32, contiguous
        DELTA,  # (B, H, N_Q) float32, contiguous
        DQ,  # (B, H, N_Q, HEAD_DIM), written in Q's dtype
        s_qb, s_qh, s_qm, s_qd,
        s_kb, s_kh, s_kn, s_kd,
        s_vb, s_vh, s_vn, s_vd,
        s_mb, s_mn,
        s_gb, s_gh, s_gm, s_gd,
        s_db, s_dh, s_dm, s_dd,
        H, N_Q, N_K, HEAD_DIM,
        scale,  # softmax scale
        qk_scale,  # softmax scale * log2(e)
        HAS_MASK: tl.constexpr,
        DOT_PRECISION: tl.constexpr,
        UPCAST_DOT: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_bh = tl.program_id(1)
        b = (pid_bh // H).to(tl.int64)
        h = (pid_bh % H).to(tl.int64)
        k_base = K + b * s_kb + h * s_kh
        v_base = V + b * s_vb + h * s_vh
        m_base = MASK + b * s_mb

        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, BLOCK_D)
        row_ok = rows < N_Q
        dim_ok = dims < HEAD_DIM
        qo_ok = row_ok[:, None] & dim_ok[None, :]
        q = tl.load(Q + b * s_qb + h * s_qh + rows[:, None] * s_qm + dims[None, :] * s_qd, mask=qo_ok, other=0.0)
        g = tl.load(DO + b * s_gb + h * s_gh + rows[:, None] * s_gm + dims[None, :] * s_gd, mask=qo_ok, other=0.0)
        stat_base = pid_bh.to(tl.int64) * N_Q
        lse = tl.load(LSE + stat_base + rows, mask=row_ok, other=float("inf")) * 1.4426950408889634
        delta = tl.load(DELTA + stat_base + rows, mask=row_ok, other=0.0)

        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        for start in range(0, N_K, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            in_range = cols < N_K
            keep = in_range
            if HAS_MASK:
                padded = tl.load(m_base + cols * s_mn, mask=in_range, other=1)
                keep = keep & (padded == 0)
            kv_ok = in_range[:, None] & dim_ok[None, :]
            k = tl.load(k_base + cols[:, None] * s_kn + dims[None, :] * s_kd, mask=kv_ok, other=0.0)
            v = tl.load(v_base + cols[:, None] * s_vn + dims[None, :] * s_vd, mask=kv_ok, other=0.0)
            s = _mma(q, tl.trans(k), None, DOT_PRECISION, UPCAST_DOT) * qk_scale
            p = tl.math.exp2(s - lse[:, None])
            p = tl.where(keep[None, :], p, 0.0)
            dp = _mma(g, tl.trans(v), None, DOT_PRECISION, UPCAST_DOT)
            ds = p * (dp - delta[:, None])
            dq = _mma(ds.to(k.dtype), k, dq, DOT_PRECISION, UPCAST_DOT)

        dq = dq * scale
        tl.store(
            DQ + b * s_db + h * s_dh + rows[:, None] * s_dm + dims[None, :] * s_dd,
            dq.to(DQ.dtype.element_ty),
            mask=qo_ok,
        )
