"""DETR's Hungarian set loss on padded targets, without host synchronisation.

Targets are taken in padded form: `class_labels (B, T)` int64, `boxes (B, T, 4)` normalised cxcywh and
`num_targets (B,)`; Transformers' list of per-image dicts is converted to it first. Every decoder layer that
is supervised (the last one, plus the intermediate ones with `auxiliary_loss`) is matched in ONE batched call
of `kernels.hungarian` (layers stacked on the batch dimension), and the matched pairs are used through
gather / scatter on fixed shapes, so that on CUDA the whole loss runs without reading device memory on the
host. The total number of target boxes is kept as a tensor (averaged over processes when
`torch.distributed` is initialised, clamped to at least 1).

The terms and their weights are those of Transformers' `ForObjectDetectionLoss`: weighted cross-entropy
(`eos_coefficient` for no-object), L1 and 1 - GIoU on matched boxes divided by the number of boxes, and the
cardinality error (logged only). Matching and loss are computed in float32 whatever the autocast dtype.

Non-finite predictions: non-finite matching costs (NaN / inf logits or boxes) are replaced by the largest
float32 value before matching, as Transformers does, so matching never fails; the loss itself is then
computed from those predictions as they are and comes out NaN / inf, so that divergence stays visible.
"""

import torch
from torch.nn import functional as F

from ..kernels.hungarian import batched_linear_sum_assignment, detr_matching_cost

# A well-formed box put in padded target slots, so that padding never produces NaN (nor NaN gradients).
_DUMMY_BOX = (0.5, 0.5, 1.0, 1.0)


def labels_to_padded(labels: list[dict], device: torch.device | str | None = None):
    """Transformers' `labels` (one dict per image with `class_labels (n,)` and `boxes (n, 4)`) in padded form.

    Returns `(class_labels (B, T) int64, boxes (B, T, 4) float32, num_targets (B,) int64)`, `T` the largest
    `n` of the batch; padded slots hold class 0 and a dummy box and are ignored through `num_targets`.
    """
    if not isinstance(labels, (list, tuple)) or not all(isinstance(t, dict) for t in labels):
        raise ValueError("labels must be a list of dicts with 'class_labels' and 'boxes' (one per image)")
    counts = []
    for index, target in enumerate(labels):
        if "class_labels" not in target or "boxes" not in target:
            raise ValueError(f"labels[{index}] needs the keys 'class_labels' and 'boxes'")
        count = target["class_labels"].shape[0]
        if tuple(target["boxes"].shape) != (count, 4):
            raise ValueError(f"labels[{index}]['boxes'] must be ({count}, 4), got {tuple(target['boxes'].shape)}")
        counts.append(count)
    device = device if device is not None else (labels[0]["boxes"].device if labels else "cpu")
    batch_size, max_targets = len(labels), max(counts, default=0)
    class_labels = torch.zeros((batch_size, max_targets), dtype=torch.int64, device=device)
    boxes = torch.tensor(_DUMMY_BOX, device=device).repeat(batch_size, max_targets, 1)
    for index, (target, count) in enumerate(zip(labels, counts)):
        class_labels[index, :count] = target["class_labels"].to(device)
        boxes[index, :count] = target["boxes"].to(device=device, dtype=torch.float32)
    return class_labels, boxes, torch.tensor(counts, dtype=torch.int64, device=device)


def _cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def paired_generalized_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """GIoU of each box of `boxes1` with the box at the same position of `boxes2` (xyxy, any leading shape)."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    inter_wh = (torch.min(boxes1[..., 2:], boxes2[..., 2:]) - torch.max(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area1 + area2 - inter
    iou = inter / union
    hull_wh = (torch.max(boxes1[..., 2:], boxes2[..., 2:]) - torch.min(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    hull = hull_wh[..., 0] * hull_wh[..., 1]
    return iou - (hull - union) / hull


def _num_boxes(num_targets: torch.Tensor) -> torch.Tensor:
    """Average number of target boxes per process, as a float tensor, at least 1."""
    num_boxes = num_targets.sum().to(torch.float32)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(num_boxes)
        num_boxes = num_boxes / torch.distributed.get_world_size()
    return num_boxes.clamp(min=1)


def match(logits, pred_boxes, class_labels, boxes, num_targets, config, backend: str = "auto") -> torch.Tensor:
    """`query_for_target (N, T)` (-1 where unmatched) for `N` stacked problems, with DETR's matching cost."""
    cost = detr_matching_cost(
        logits.detach().float(),
        pred_boxes.detach().float(),
        class_labels,
        boxes.float(),
        num_targets,
        class_cost=config.class_cost,
        bbox_cost=config.bbox_cost,
        giou_cost=config.giou_cost,
        backend=backend,
    )
    largest = torch.finfo(cost.dtype).max
    cost = torch.nan_to_num(cost, nan=largest, posinf=largest, neginf=largest)
    return batched_linear_sum_assignment(cost, num_targets, backend=backend).query_for_target


def set_losses(logits, pred_boxes, class_labels, boxes, num_targets, query_for_target, num_boxes, eos_coefficient):
    """Per-problem loss terms for `N` problems: each a `(N,)` tensor (weighted mean over the problem's group
    is done by the caller). Returns the cross-entropy numerator and denominator, L1, GIoU and cardinality error.
    """
    N, Q, num_classes_with_eos = logits.shape
    T = class_labels.shape[1]
    no_object = num_classes_with_eos - 1
    matched = query_for_target >= 0  # (N, T)
    # Target index of each query (-1: no object). Unmatched targets scatter into a dropped extra column.
    target_for_query = torch.full((N, Q + 1), -1, dtype=torch.int64, device=logits.device)
    scatter_index = torch.where(matched, query_for_target, torch.full_like(query_for_target, Q))
    target_ids = torch.arange(T, device=logits.device).expand(N, T)
    target_for_query = target_for_query.scatter(1, scatter_index, target_ids)[:, :Q]
    has_target = target_for_query >= 0
    target_classes = torch.where(
        has_target, class_labels.gather(1, target_for_query.clamp(min=0)), torch.full_like(target_for_query, no_object)
    )
    class_weight = torch.ones(num_classes_with_eos, device=logits.device)
    class_weight[-1] = eos_coefficient
    nll = F.cross_entropy(logits.transpose(1, 2), target_classes, reduction="none")  # (N, Q)
    weights = class_weight[target_classes]
    ce_numerator, ce_denominator = (weights * nll).sum(1), weights.sum(1)

    source = pred_boxes.gather(1, query_for_target.clamp(min=0)[..., None].expand(N, T, 4))
    target = torch.where(matched[..., None], boxes, boxes.new_tensor(_DUMMY_BOX))
    l1 = torch.where(matched, (source - target).abs().sum(-1), 0.0).sum(1) / num_boxes
    giou = paired_generalized_iou(_cxcywh_to_xyxy(source), _cxcywh_to_xyxy(target))
    giou_loss = torch.where(matched, 1 - giou, 0.0).sum(1) / num_boxes

    with torch.no_grad():
        predicted_objects = (logits.argmax(-1) != no_object).sum(1).float()
        cardinality = (predicted_objects - num_targets.float()).abs()
    return ce_numerator, ce_denominator, l1, giou_loss, cardinality


def detr_loss(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    class_labels: torch.Tensor,
    boxes: torch.Tensor,
    num_targets: torch.Tensor,
    config,
    auxiliary_logits: torch.Tensor | None = None,
    auxiliary_boxes: torch.Tensor | None = None,
    backend: str = "auto",
):
    """DETR's loss for a padded batch; returns `(loss, loss_dict)` with Transformers' keys and weights.

    `auxiliary_logits (L-1, B, Q, C+1)` / `auxiliary_boxes (L-1, B, Q, 4)`: the intermediate decoder layers'
    predictions (keys suffixed `_0` ... `_{L-2}`). All layers are matched in one batched assignment call.
    """
    batch_size = logits.shape[0]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        all_logits, all_boxes = logits.float()[None], pred_boxes.float()[None]
        if auxiliary_logits is not None:
            all_logits = torch.cat([auxiliary_logits.float(), all_logits])
            all_boxes = torch.cat([auxiliary_boxes.float(), all_boxes])
        num_layers = all_logits.shape[0]
        class_labels = class_labels.to(logits.device, torch.int64)
        boxes = boxes.to(logits.device, torch.float32)
        num_targets = num_targets.to(logits.device, torch.int64)
        # Keep padding well-formed whatever the caller put there.
        real = torch.arange(boxes.shape[1], device=logits.device)[None, :] < num_targets[:, None]
        boxes = torch.where(real[..., None], boxes, boxes.new_tensor(_DUMMY_BOX))
        class_labels = torch.where(real, class_labels, 0)
        if boxes.shape[1] == 0:  # no targets anywhere: one padded slot keeps gathers well-defined
            boxes = boxes.new_tensor(_DUMMY_BOX).repeat(batch_size, 1, 1)
            class_labels = class_labels.new_zeros((batch_size, 1))

        stacked = (
            all_logits.flatten(0, 1),
            all_boxes.flatten(0, 1),
            class_labels.repeat(num_layers, 1),
            boxes.repeat(num_layers, 1, 1),
            num_targets.repeat(num_layers),
        )
        query_for_target = match(*stacked, config, backend=backend)
        num_boxes = _num_boxes(num_targets)
        terms = set_losses(*stacked, query_for_target, num_boxes, config.eos_coefficient)
        ce_num, ce_den, l1, giou, cardinality = (t.view(num_layers, batch_size).sum(1) for t in terms)
        loss_ce = ce_num / ce_den
        cardinality = cardinality / batch_size

        weights = {"loss_ce": 1, "loss_bbox": config.bbox_loss_coefficient, "loss_giou": config.giou_loss_coefficient}
        per_layer = {"loss_ce": loss_ce, "loss_bbox": l1, "loss_giou": giou, "cardinality_error": cardinality}
        loss_dict, loss = {}, 0.0
        for layer in range(num_layers):
            suffix = "" if layer == num_layers - 1 else f"_{layer}"
            for name, values in per_layer.items():
                loss_dict[name + suffix] = values[layer]
                if name in weights:
                    loss = loss + weights[name] * values[layer]
    return loss, loss_dict


def targets_from_labels(labels, device):
    """Accept either Transformers' list of dicts or a dict of padded `class_labels`, `boxes`, `num_targets`."""
    if hasattr(labels, "keys"):
        missing = {"class_labels", "boxes", "num_targets"} - set(labels.keys())
        if missing:
            raise ValueError(
                f"padded labels need the keys class_labels, boxes and num_targets; missing {sorted(missing)}"
            )
        class_labels, boxes, num_targets = labels["class_labels"], labels["boxes"], labels["num_targets"]
        if class_labels.dim() != 2 or tuple(boxes.shape) != (*class_labels.shape, 4) or num_targets.dim() != 1:
            raise ValueError(
                "padded labels must be class_labels (B, T), boxes (B, T, 4) and num_targets (B,), got "
                f"{tuple(class_labels.shape)}, {tuple(boxes.shape)}, {tuple(num_targets.shape)}"
            )
        return class_labels.to(device), boxes.to(device), num_targets.to(device)
    return labels_to_padded(labels, device)
