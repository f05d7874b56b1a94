"""Triton kernel solving a whole batch of rectangular linear sum assignment problems in one launch.

Each problem is solved on its own, one per program on a GPU (under the interpreter a program runs many
problems in lock-step, as rows of its tiles, since the interpreter's cost is per operation). It follows
SciPy's `linear_sum_assignment` step by step (Crouse's shortest augmenting path, as in SciPy's
`rectangular_lsap.cpp`) so that it returns the *same* assignment, not merely one of equal cost:

* a problem with more rows (queries) than columns (real targets) is solved transposed, so the loop over
  augmentations always runs over the smaller side;
* each augmentation is a Dijkstra search over the columns. SciPy scans a list of remaining columns that starts
  in reverse order and removes a column by moving the last entry into its slot; the kernel keeps each column's
  slot in that list (`pos`) and applies the same moves, so that among equal reduced costs it picks the column
  SciPy would pick: the last unassigned one in scan order if there is one, else the first one;
* dual variables and reduced costs are float64 and evaluated in the same order as SciPy, because float32 duals
  break near-ties differently.

Every per-row and per-column vector lives in registers, in `BLOCK = next_power_of_2(max(Q, T))` lanes; a scalar
is read out of a vector with a masked sum, and written with a masked `where`. There is no scratch memory and no
host synchronisation, so the launch can be captured in a CUDA graph.
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the SciPy backend still works without Triton
    triton = None
    tl = None

HAS_TRITON = triton is not None

# Values written to `status` for each problem.
STATUS_OK = 0
STATUS_INFEASIBLE = 1
STATUS_INVALID = 2
STATUS_BAD_NUM_TARGETS = 3


if HAS_TRITON:

    @triton.jit
    def _lsap_kernel(
        cost_ptr,
        num_targets_ptr,
        out_ptr,
        status_ptr,
        B,
        Q,
        T,
        stride_b,
        stride_q,
        stride_t,
        sign,
        BLOCK: tl.constexpr,
        PROBS: tl.constexpr,
    ):
        # PROBS problems per program run in lock-step, one per row of every [PROBS, BLOCK] tile: 1 on a GPU,
        # many under the interpreter, whose cost is per operation rather than per element.
        pb = tl.program_id(0).to(tl.int64) * PROBS + tl.arange(0, PROBS).to(tl.int64)
        p_ok = pb < B
        lanes = tl.arange(0, BLOCK)[None, :]
        inf = float("inf")

        nt = tl.load(num_targets_ptr + pb, mask=p_ok, other=0).to(tl.int32)
        bad_nt = (nt < 0) | (nt > T)
        nt = tl.where(bad_nt, 0, nt)
        # SciPy transposes a tall matrix: rows become the targets and columns the queries.
        tr = (nt < Q).to(tl.int32)
        nr = tr * nt + (1 - tr) * Q
        nc = tr * Q + (1 - tr) * nt
        s_row = (tr * stride_t + (1 - tr) * stride_q).to(tl.int64)[:, None]
        s_col = (tr * stride_q + (1 - tr) * stride_t).to(tl.int64)[:, None]
        base = cost_ptr + pb[:, None] * stride_b
        col_ok = lanes < nc[:, None]
        col_off = lanes.to(tl.int64) * s_col

        # SciPy refuses NaN and -inf anywhere in the (possibly negated) matrix before solving.
        n_bad = nr * 0
        for r in range(tl.max(nr, axis=0)):
            m = col_ok & (r < nr[:, None])
            x = tl.load(base + r * s_row + col_off, mask=m, other=0.0).to(tl.float64) * sign
            n_bad += tl.sum(((x != x) | (x == -inf)).to(tl.int32), axis=1)  # noqa: PLR0124 (NaN test)
        status = tl.where(bad_nt, 3, tl.where(n_bad > 0, 2, 0))
        n_todo = tl.where(status == 0, nr, 0)

        u = tl.zeros([PROBS, BLOCK], dtype=tl.float64)
        v = tl.zeros([PROBS, BLOCK], dtype=tl.float64)
        col4row = tl.full([PROBS, BLOCK], -1, tl.int32)
        row4col = tl.full([PROBS, BLOCK], -1, tl.int32)
        path = tl.full([PROBS, BLOCK], -1, tl.int32)

        cur = nr * 0
        while tl.max((cur < n_todo).to(tl.int32), axis=0) > 0:
            active = cur < n_todo
            # ---- shortest augmenting path from row `cur` (Dijkstra over the columns) ----
            spc = tl.full([PROBS, BLOCK], inf, tl.float64)
            alive = col_ok & active[:, None]
            in_sc = alive & (lanes < 0)
            in_sr = in_sc
            d_row = tl.zeros([PROBS, BLOCK], dtype=tl.float64)  # path cost of the column each SR row holds
            pos = nc[:, None] - 1 - lanes  # slot in SciPy's `remaining` list, which starts reversed
            n_rem = nc
            min_val = tl.sum(d_row, axis=1)
            i = cur
            u_i = tl.sum(tl.where(lanes == i[:, None], u, 0.0), axis=1)
            sink = tl.where(active, -1, -3)
            while tl.max((sink == -1).to(tl.int32), axis=0) > 0:
                srch = sink == -1
                live = alive & srch[:, None]
                c = tl.load(base + i[:, None].to(tl.int64) * s_row + col_off, mask=live, other=0.0)
                r = min_val[:, None] + c.to(tl.float64) * sign - u_i[:, None] - v
                better = live & (r < spc)
                path = tl.where(better, i[:, None], path)
                spc = tl.where(better, r, spc)
                lowest = tl.min(tl.where(live, spc, inf), axis=1)
                cand = live & (spc == lowest[:, None])
                # SciPy's scan: a later equal entry wins only if its column is unassigned.
                p_free = tl.max(tl.where(cand & (row4col == -1), pos, -1), axis=1)
                p_any = tl.min(tl.where(cand, pos, BLOCK), axis=1)
                p_sel = tl.where(p_free >= 0, p_free, p_any)
                j = tl.sum(tl.where(live & (pos == p_sel[:, None]), lanes, 0), axis=1)
                is_j = live & (lanes == j[:, None])
                row_j = tl.sum(tl.where(is_j, row4col, 0), axis=1)
                row_j = tl.where(srch, row_j, -1)
                # Remove column j: the last remaining entry moves into its slot.
                pos = tl.where(live & (pos == n_rem[:, None] - 1), p_sel[:, None], pos)
                alive = alive & ~is_j
                n_rem -= srch.to(tl.int32)
                in_sc = in_sc | is_j
                min_val = tl.where(srch, lowest, min_val)
                hit = lanes == row_j[:, None]  # empty when column j is free (row_j == -1)
                in_sr = in_sr | hit
                d_row = tl.where(hit, lowest[:, None], d_row)
                i = tl.where(row_j == -1, i, row_j)
                u_i = tl.sum(tl.where(lanes == i[:, None], u, 0.0), axis=1)
                sink = tl.where(srch & (row_j == -1), j, sink)
                sink = tl.where(srch & (lowest == inf), -2, sink)  # all remaining columns forbidden: infeasible
            feasible = sink >= 0
            status = tl.where(active & (sink == -2), 1, status)

            # ---- dual update, same expressions and order as SciPy ----
            f2 = feasible[:, None]
            mv = tl.where(feasible, min_val, 0.0)[:, None]  # keeps inf - inf out of the masked-off lanes
            u = tl.where(f2 & (lanes == cur[:, None]), u + mv, u)
            u = tl.where(f2 & in_sr, u + (mv - d_row), u)
            v = tl.where(f2 & in_sc, v - (mv - tl.where(in_sc, spc, 0.0)), v)

            # ---- augment along the path back to row `cur` ----
            j = sink
            i = tl.where(feasible, -1, cur)
            while tl.max((i != cur).to(tl.int32), axis=0) > 0:
                step = i != cur
                i = tl.where(step, tl.sum(tl.where(lanes == j[:, None], path, 0), axis=1), i)
                row4col = tl.where(step[:, None] & (lanes == j[:, None]), i[:, None], row4col)
                prev = tl.sum(tl.where(lanes == i[:, None], col4row, 0), axis=1)
                col4row = tl.where(step[:, None] & (lanes == i[:, None]), j[:, None], col4row)
                j = tl.where(step, prev, j)
            cur = tl.where(feasible, cur + 1, tl.where(active, n_todo, cur))

        # query matched to each target: col4row when transposed (rows are targets), row4col otherwise.
        qft = tl.where(tr[:, None] == 1, col4row, row4col)
        qft = tl.where((lanes < nt[:, None]) & (status[:, None] == 0), qft, -1)
        tl.store(out_ptr + pb[:, None] * T + lanes, qft.to(tl.int64), mask=p_ok[:, None] & (lanes < T))
        tl.store(status_ptr + pb, status, mask=p_ok)


def _num_warps(block: int) -> int:
    """The search is a chain of dependent reductions: few warps keep each one cheap."""
    return 1 if block <= 128 else (2 if block <= 256 else 4)


def is_interpreted() -> bool:
    """True when the kernels were decorated under `TRITON_INTERPRET=1` (they then take CPU tensors)."""
    return HAS_TRITON and type(_lsap_kernel).__name__ == "InterpretedFunction"


def lsap_triton(cost: torch.Tensor, num_targets: torch.Tensor, maximize: bool):
    """Launch the solver: `cost (B, Q, T)` float, `num_targets (B,)` int64 on the same device.

    Returns `(query_for_target (B, T) int64, status (B,) int32)`; outputs have fixed shapes, nothing is read back.
    """
    if not HAS_TRITON:
        raise RuntimeError("the Triton Hungarian solver needs the `triton` package, which is not installed")
    B, Q, T = cost.shape
    out = torch.full((B, T), -1, dtype=torch.int64, device=cost.device)
    status = torch.zeros((B,), dtype=torch.int32, device=cost.device)
    if B == 0:
        return out, status
    if Q == 0 or T == 0:
        bad = (num_targets < 0) | (num_targets > T)
        return out, torch.where(bad, STATUS_BAD_NUM_TARGETS, STATUS_OK).to(torch.int32)
    block = triton.next_power_of_2(max(Q, T))
    probs = min(triton.next_power_of_2(B), 512) if is_interpreted() else 1
    _lsap_kernel[(triton.cdiv(B, probs),)](
        cost,
        num_targets,
        out,
        status,
        B,
        Q,
        T,
        *cost.stride(),
        -1.0 if maximize else 1.0,
        BLOCK=block,
        PROBS=probs,
        num_warps=_num_warps(block),
    )
    return out, status
