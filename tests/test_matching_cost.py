"""DETR's matching cost: Triton kernel vs batched PyTorch reference vs an independent per-image float64 version."""

import pytest
import torch

from tritonvision.kernels.hungarian import batched_linear_sum_assignment, detr_matching_cost

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def box_cxcywh_to_xyxy(x):
    cx, cy, w, h = x.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def generalized_box_iou(a, b):
    """Pairwise GIoU of xyxy boxes, written the way DETR's `util/box_ops.py` computes it."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b - inter
    iou = inter / union
    lt = torch.min(a[:, None, :2], b[:, :2])
    rb = torch.max(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


def per_image_float64(logits, pred_boxes, labels, boxes, num_targets, wc=1.0, wb=5.0, wg=2.0):
    """HungarianMatcher's cost, image by image, in float64; padded columns 0."""
    B, Q, _ = logits.shape
    out = torch.zeros(B, Q, labels.shape[1], dtype=torch.float64)
    for b in range(B):
        n = int(num_targets[b])
        prob = logits[b].double().softmax(-1)
        tb = boxes[b, :n].double()
        pb = pred_boxes[b].double()
        c = wb * torch.cdist(pb, tb, p=1) + wc * -prob[:, labels[b, :n]]
        c = c + wg * -generalized_box_iou(box_cxcywh_to_xyxy(pb), box_cxcywh_to_xyxy(tb))
        out[b, :, :n] = c
    return out


def make_inputs(B, Q, T, C, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(B, Q, C, generator=gen)).to(dtype)
    pred = torch.cat([torch.rand(B, Q, 2, generator=gen), 0.05 + 0.5 * torch.rand(B, Q, 2, generator=gen)], -1)
    tgt = torch.cat([torch.rand(B, T, 2, generator=gen), 0.05 + 0.5 * torch.rand(B, T, 2, generator=gen)], -1)
    labels = torch.randint(0, C - 1, (B, T), generator=gen)
    nt = torch.randint(0, T + 1, (B,), generator=gen)
    nt[0] = T
    labels[torch.arange(T)[None, :] >= nt[:, None]] = -1  # padding labels may be anything
    return logits, pred.to(dtype), labels, tgt.to(dtype), nt


@pytest.mark.interpret
@pytest.mark.parametrize("B,Q,T,C", [(3, 10, 7, 5), (2, 40, 70, 92), (4, 33, 5, 300)])
def test_triton_matches_reference_and_float64(B, Q, T, C):
    inputs = make_inputs(B, Q, T, C)
    tri = detr_matching_cost(*(x.to(DEVICE) for x in inputs), backend="triton").cpu()
    ref = detr_matching_cost(*inputs, backend="scipy")
    exact = per_image_float64(*inputs)
    assert tri.shape == (B, Q, T) and tri.dtype == torch.float32
    torch.testing.assert_close(tri, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tri.double(), exact, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref.double(), exact, rtol=1e-5, atol=1e-5)
    padded = torch.arange(T)[None, :] >= inputs[4][:, None]
    assert (tri.permute(0, 2, 1)[padded] == 0).all()


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(dtype):
    inputs = make_inputs(2, 12, 6, 10, dtype=dtype, seed=1)
    tri = detr_matching_cost(*(x.to(DEVICE) for x in inputs), backend="triton").cpu()
    assert tri.dtype == torch.float32
    torch.testing.assert_close(tri.double(), per_image_float64(*inputs), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(detr_matching_cost(*inputs, backend="scipy"), tri, rtol=1e-5, atol=1e-5)


@pytest.mark.interpret
def test_weights_and_stacked_layers_then_matching():
    logits, pred, labels, tgt, nt = make_inputs(2, 9, 4, 6, seed=2)
    layers = 3  # decoder layers stacked on the batch dimension, targets repeated
    stacked = [torch.cat([x] * layers) for x in (logits, pred, labels, tgt, nt)]
    cost = detr_matching_cost(*stacked, class_cost=2.0, bbox_cost=1.0, giou_cost=0.5, backend="triton")
    exact = per_image_float64(*stacked, wc=2.0, wb=1.0, wg=0.5)
    torch.testing.assert_close(cost.double(), exact, rtol=1e-5, atol=1e-5)
    res = batched_linear_sum_assignment(cost, stacked[4], backend="triton").check()
    ref = batched_linear_sum_assignment(cost, stacked[4], backend="scipy")
    assert torch.equal(res.query_for_target, ref.query_for_target)


def test_validation():
    logits, pred, labels, tgt, nt = make_inputs(2, 5, 3, 4)
    with pytest.raises(ValueError, match="pred_boxes"):
        detr_matching_cost(logits, pred[:, :4], labels, tgt, nt)
    with pytest.raises(ValueError, match="target_boxes"):
        detr_matching_cost(logits, pred, labels, tgt[:, :2], nt)
    with pytest.raises(ValueError, match="logits"):
        detr_matching_cost(logits[0], pred, labels, tgt, nt)
    with pytest.raises(ValueError, match="num_targets"):
        detr_matching_cost(logits, pred, labels, tgt, torch.tensor([1, 9]))


@pytest.mark.interpret
@pytest.mark.parametrize("use_triton", [False, True])
def test_opcheck_detr_matching_cost(use_triton):
    logits, pred, labels, tgt, nt = make_inputs(2, 6, 4, 5)
    torch.library.opcheck(
        torch.ops.tritonvision.detr_matching_cost.default, (logits, pred, labels, tgt, nt, 1.0, 5.0, 2.0, use_triton)
    )


@pytest.mark.gpu
def test_gpu_real_sizes():
    inputs = make_inputs(64 * 6, 100, 90, 92, seed=3)
    tri = detr_matching_cost(*(x.cuda() for x in inputs), backend="triton").cpu()
    torch.testing.assert_close(tri, detr_matching_cost(*inputs, backend="scipy"), rtol=1e-5, atol=1e-5)
