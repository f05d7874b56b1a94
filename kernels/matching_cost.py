"""DETR's Hungarian matching cost for a whole padded batch: a fused Triton kernel and its PyTorch reference.

For each image the cost of giving target `t` to query `q` is, as in facebookresearch/detr's `HungarianMatcher`
and Transformers' `DetrHungarianMatcher`:

    bbox_cost * L1(cxcywh) + class_cost * (-softmax(logits)[label]) + giou_cost * (-GIoU(xyxy))

with the softmax over all classes, no-object included. Both versions compute in float32 whatever the input
dtype and fill padded target columns with 0. Several decoder layers are matched at once by stacking them on the
batch dimension (`(L * B, Q, ...)`, targets repeated).
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the PyTorch reference still works without Triton
    triton = None
    tl = None

HAS_TRITON = triton is not None


if HAS_TRITON:

    @triton.jit
    def _detr_cost_kernel(
        logits_ptr,
        pbox_ptr,
        tlab_ptr,
        tbox_ptr,
        num_targets_ptr,
        out_ptr,
        Q,
        T,
        C,
        s_lb,
        s_lq,
        s_lc,
        s_pb,
        s_pq,
        s_pd,
        s_tlb,
        s_tlt,
        s_tbb,
        s_tbt,
        s_tbd,
        w_class,
        w_bbox,
        w_giou,
        BLOCK_Q: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ):
        b = tl.program_id(0).to(tl.int64)
        qs = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        ts = tl.program_id(2) * BLOCK_T + tl.arange(0, BLOCK_T)
        q_ok = qs < Q
        nt = tl.load(num_targets_ptr + b)
        t_ok = (ts < T) & (ts < nt)
        lrow = logits_ptr + b * s_lb + qs.to(tl.int64)[:, None] * s_lq

        # Softmax statistics over all C classes (online max / sum, chunks of BLOCK_C).
        m = tl.full([BLOCK_Q], -float("inf"), tl.float32)
        s = tl.zeros([BLOCK_Q], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            x = tl.load(lrow + cs[None, :] * s_lc, mask=q_ok[:, None] & (cs < C)[None, :], other=-float("inf"))
            x = tl.where(q_ok[:, None], x.to(tl.float32), 0.0)
            m_new = tl.maximum(m, tl.max(x, axis=1))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
            m = m_new

        lab = tl.load(tlab_ptr + b * s_tlb + ts * s_tlt, mask=t_ok, other=0)
        lab = tl.minimum(tl.maximum(lab, 0), C - 1)
        pair = q_ok[:, None] & t_ok[None, :]
        lg = tl.load(lrow + lab[None, :] * s_lc, mask=pair, other=0.0).to(tl.float32)
        prob = tl.exp(lg - m[:, None]) / s[:, None]

        pb = pbox_ptr + b * s_pb + qs * s_pq
        pcx = tl.load(pb, mask=q_ok, other=0.0).to(tl.float32)[:, None]
        pcy = tl.load(pb + s_pd, mask=q_ok, other=0.0).to(tl.float32)[:, None]
        pw = tl.load(pb + 2 * s_pd, mask=q_ok, other=1.0).to(tl.float32)[:, None]
        ph = tl.load(pb + 3 * s_pd, mask=q_ok, other=1.0).to(tl.float32)[:, None]
        tb = tbox_ptr + b * s_tbb + ts * s_tbt
        tcx = tl.load(tb, mask=t_ok, other=0.0).to(tl.float32)[None, :]
        tcy = tl.load(tb + s_tbd, mask=t_ok, other=0.0).to(tl.float32)[None, :]
        tw = tl.load(tb + 2 * s_tbd, mask=t_ok, other=1.0).to(tl.float32)[None, :]
        th = tl.load(tb + 3 * s_tbd, mask=t_ok, other=1.0).to(tl.float32)[None, :]

        l1 = tl.abs(pcx - tcx) + tl.abs(pcy - tcy) + tl.abs(pw - tw) + tl.abs(ph - th)

        px0 = pcx - 0.5 * pw
        py0 = pcy - 0.5 * ph
        px1 = pcx + 0.5 * pw
        py1 = pcy + 0.5 * ph
        tx0 = tcx - 0.5 * tw
        ty0 = tcy - 0.5 * th
        tx1 = tcx + 0.5 * tw
        ty1 = tcy + 0.5 * th
        area_p = (px1 - px0) * (py1 - py0)
        area_t = (tx1 - tx0) * (ty1 - ty0)
        iw = tl.maximum(tl.minimum(px1, tx1) - tl.maximum(px0, tx0), 0.0)
        ih = tl.maximum(tl.minimum(py1, ty1) - tl.maximum(py0, ty0), 0.0)
        inter = iw * ih
        union = area_p + area_t - inter
        iou = inter / union
        ew = tl.maximum(tl.maximum(px1, tx1) - tl.minimum(px0, tx0), 0.0)
        eh = tl.maximum(tl.maximum(py1, ty1) - tl.minimum(py0, ty0), 0.0)
        enclose = ew * eh
        giou = iou - (enclose - union) / enclose

        cost = w_bbox * l1 + w_class * (-prob) + w_giou * (-giou)
        cost = tl.where(t_ok[None, :], cost, 0.0)
        tl.store(out_ptr + b * Q * T + qs[:, None] * T + ts[None, :], cost, mask=q_ok[:, None] & (ts < T)[None, :])


def detr_cost_triton(logits, pred_boxes, target_labels, target_boxes, num_targets, class_cost, bbox_cost, giou_cost):
    """One launch over (batch, query blocks, target blocks); returns `(B, Q, T)` float32."""
    if not HAS_TRITON:
        raise RuntimeError("the Triton matching-cost kernel needs the `triton` package, which is not installed")
    B, Q, C = logits.shape
    T = target_labels.shape[1]
    out = torch.empty((B, Q, T), dtype=torch.float32, device=logits.device)
    if out.numel() == 0:
        return out
    block_q = min(triton.next_power_of_2(Q), 32)
    block_t = min(triton.next_power_of_2(T), 64)
    block_c = min(triton.next_power_of_2(C), 256)
    grid = (B, triton.cdiv(Q, block_q), triton.cdiv(T, block_t))
    _detr_cost_kernel[grid](
        logits,
        pred_boxes,
        target_labels,
        target_boxes,
        num_targets,
        out,
        Q,
        T,
        C,
        *logits.stride(),
        *pred_boxes.stride(),
        *target_labels.stride(),
        *target_boxes.stride(),
        float(class_cost),
        float(bbox_cost),
        float(giou_cost),
        BLOCK_Q=block_q,
        BLOCK_T=block_t,
        BLOCK_C=block_c,
        num_warps=4,
    )
    return out


def _cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def detr_cost_reference(logits, pred_boxes, target_labels, target_boxes, num_targets, class_cost, bbox_cost, giou_cost):
    """The same cost with batched PyTorch operations (float32), used on CPU and as the test oracle."""
    B, Q, C = logits.shape
    T = target_labels.shape[1]
    prob = logits.float().softmax(-1)
    labels = target_labels.clamp(0, max(C - 1, 0)).long()
    cost_class = -torch.gather(prob, 2, labels[:, None, :].expand(B, Q, T))
    pb = pred_boxes.float()
    tb = target_boxes.float()
    cost_bbox = (pb[:, :, None, :] - tb[:, None, :, :]).abs().sum(-1)
    p = _cxcywh_to_xyxy(pb)[:, :, None, :]
    t = _cxcywh_to_xyxy(tb)[:, None, :, :]
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    iw = (torch.minimum(p[..., 2], t[..., 2]) - torch.maximum(p[..., 0], t[..., 0])).clamp(min=0)
    ih = (torch.minimum(p[..., 3], t[..., 3]) - torch.maximum(p[..., 1], t[..., 1])).clamp(min=0)
    inter = iw * ih
    union = area_p + area_t - inter
    iou = inter / union
    ew = (torch.maximum(p[..., 2], t[..., 2]) - torch.minimum(p[..., 0], t[..., 0])).clamp(min=0)
    eh = (torch.maximum(p[..., 3], t[..., 3]) - torch.minimum(p[..., 1], t[..., 1])).clamp(min=0)
    enclose = ew * eh
    giou = iou - (enclose - union) / enclose
    cost = bbox_cost * cost_bbox + class_cost * cost_class + giou_cost * (-giou)
    real = torch.arange(T, device=logits.device)[None, None, :] < num_targets.to(logits.device)[:, None, None]
    return torch.where(real, cost, torch.zeros((), dtype=cost.dtype, device=cost.device))
