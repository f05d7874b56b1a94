"""Batched Hungarian matching for DETR: the exact SciPy assignment, for a whole batch, in one kernel launch.

Public API:

* `batched_linear_sum_assignment(cost, num_targets=None, maximize=False, backend="auto")` solves `B` problems of
  a padded `(B, Q, T)` cost (columns `>= num_targets[b]` ignored) and returns an `Assignment`.
* `linear_sum_assignment(cost_matrix, maximize=False, backend="auto")` is a drop-in for
  `scipy.optimize.linear_sum_assignment` (same inputs, outputs and errors) built on the batched solver.
* `detr_matching_cost(...)` builds DETR's `(B, Q, T)` matching cost (see `matching_cost.py`).

Backends: `"triton"` runs our kernel (CUDA tensors, or CPU tensors under `TRITON_INTERPRET=1`), `"scipy"` loops
SciPy over the batch on the host (the reference), `"auto"` picks Triton for CUDA tensors when it imports and
SciPy otherwise; `TRITONVISION_FORCE_TRITON=1` makes `"auto"` pick Triton for CPU tensors too.

The Triton path never reads device memory from the host and has fixed output shapes, so it can be captured in a
CUDA graph; errors are reported per problem in `Assignment.status` and raised by `Assignment.check()`.

Both solver and cost are `torch.library` custom operators, `torch.ops.tritonvision.lsap_solve` and
`torch.ops.tritonvision.detr_matching_cost`, with fake implementations for `torch.compile`. They have no
autograd: matching is done without gradients, and the loss recomputes differentiable costs from the indices.
"""

import os
from typing import NamedTuple

import numpy as np
import torch

from .hungarian_triton import (
    HAS_TRITON,
    STATUS_BAD_NUM_TARGETS,
    STATUS_INFEASIBLE,
    STATUS_INVALID,
    STATUS_OK,
    is_interpreted,
    lsap_triton,
)
from .matching_cost import detr_cost_reference, detr_cost_triton

try:
    import scipy.optimize as _scipy_optimize
except ImportError:  # only the SciPy backend needs it
    _scipy_optimize = None

__all__ = [
    "BACKENDS",
    "Assignment",
    "batched_linear_sum_assignment",
    "detr_matching_cost",
    "linear_sum_assignment",
]

BACKENDS = ("auto", "triton", "scipy")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MESSAGES = {
    STATUS_INFEASIBLE: "cost matrix is infeasible",
    STATUS_INVALID: "matrix contains invalid numeric entries",
    STATUS_BAD_NUM_TARGETS: "num_targets must lie in [0, T]",
}


class Assignment(NamedTuple):
    """Solution of a batch of assignment problems.

    `query_for_target (B, T)` int64: the query matched to each target, -1 for padding, for targets left
    unmatched when `Q < num_targets[b]`, and for every target of a problem whose status is not 0.
    `status (B,)` int32: 0 ok, 1 infeasible, 2 NaN / -inf entries, 3 `num_targets[b]` out of range.
    """

    query_for_target: torch.Tensor
    status: torch.Tensor

    def indices(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """DETR's convention: per item `(query_indices, target_indices)` int64 CPU tensors, queries ascending.

        Reads the result back to the host (one synchronisation for the whole batch).
        """
        qft = self.query_for_target.cpu()
        out = []
        for row in qft:
            targets = torch.nonzero(row >= 0).flatten()
            queries = row[targets]
            order = torch.argsort(queries)
            out.append((queries[order], targets[order]))
        return out

    def check(self) -> "Assignment":
        """Raise SciPy's `ValueError` for the first failed problem; the one place that synchronises."""
        status = self.status.cpu()
        failed = torch.nonzero(status != STATUS_OK).flatten()
        if failed.numel():
            raise ValueError(_MESSAGES.get(int(status[failed[0]]), "assignment failed"))
        return self


# ----------------------------------------------------------------------------------------------- backends


def _want_triton(backend: str, device: torch.device) -> bool:
    """Resolve `backend` to Triton or SciPy, raising if Triton is asked for where it cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    runnable = HAS_TRITON and (device.type == "cuda" or is_interpreted())
    if backend == "triton":
        if not HAS_TRITON:
            raise RuntimeError("backend='triton' needs the `triton` package, which is not installed")
        if not runnable:
            raise RuntimeError(
                f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before import), got {device.type}"
            )
        return True
    if backend == "scipy":
        return False
    if device.type == "cuda":
        return HAS_TRITON
    return runnable and os.environ.get("TRITONVISION_FORCE_TRITON", "0") == "1"


def _lsap_scipy(cost: torch.Tensor, num_targets: torch.Tensor, maximize: bool):
    """Reference: SciPy on the host, problem by problem."""
    if _scipy_optimize is None:
        raise RuntimeError("backend='scipy' needs the `scipy` package, which is not installed")
    B, _, T = cost.shape
    host = cost.detach().to("cpu", torch.float64).numpy()
    counts = num_targets.cpu().tolist()
    out = np.full((B, T), -1, dtype=np.int64)
    status = np.zeros((B,), dtype=np.int32)
    for b, n in enumerate(counts):
        if not 0 <= n <= T:
            status[b] = STATUS_BAD_NUM_TARGETS
            continue
        try:
            rows, cols = _scipy_optimize.linear_sum_assignment(host[b, :, :n], maximize=maximize)
        except ValueError as err:
            status[b] = STATUS_INFEASIBLE if "infeasible" in str(err) else STATUS_INVALID
            continue
        out[b, cols] = rows
    return torch.from_numpy(out).to(cost.device), torch.from_numpy(status).to(cost.device)


# ------------------------------------------------------------------------------------------ custom operators
# The same file may be imported twice (installed package and a flat trust_remote_code copy): register once.


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.tritonvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


if not _has_op("lsap_solve"):

    @torch.library.custom_op("tritonvision::lsap_solve", mutates_args=())
    def _lsap_solve(
        cost: torch.Tensor, num_targets: torch.Tensor, maximize: bool, use_triton: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Solve `(B, Q, T)` problems; `use_triton` is decided in Python by the caller."""
        if use_triton:
            return lsap_triton(cost, num_targets, maximize)
        return _lsap_scipy(cost, num_targets, maximize)

    @_lsap_solve.register_fake
    def _lsap_solve_fake(cost, num_targets, maximize, use_triton):
        B, _, T = cost.shape
        return cost.new_empty((B, T), dtype=torch.int64), cost.new_empty((B,), dtype=torch.int32)


if not _has_op("detr_matching_cost"):

    @torch.library.custom_op("tritonvision::detr_matching_cost", mutates_args=())
    def _detr_matching_cost(
        logits: torch.Tensor,
        pred_boxes: torch.Tensor,
        target_labels: torch.Tensor,
        target_boxes: torch.Tensor,
        num_targets: torch.Tensor,
        class_cost: float,
        bbox_cost: float,
        giou_cost: float,
        use_triton: bool,
    ) -> torch.Tensor:
        """DETR's `(B, Q, T)` float32 matching cost, padded columns 0."""
        fn = detr_cost_triton if use_triton else detr_cost_reference
        return fn(logits, pred_boxes, target_labels, target_boxes, num_targets, class_cost, bbox_cost, giou_cost)

    @_detr_matching_cost.register_fake
    def _detr_matching_cost_fake(logits, pred_boxes, target_labels, target_boxes, num_targets, *args):
        return logits.new_empty((logits.shape[0], logits.shape[1], target_labels.shape[1]), dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ public API


def _check_num_targets(num_targets, B: int, T: int, device: torch.device) -> torch.Tensor:
    """Shape and dtype always; range only in eager mode with the counts on the host (no synchronisation).

    Under torch.compile the range check is left to the solver, which records it in the problem's status.
    """
    if num_targets is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    if not isinstance(num_targets, torch.Tensor):
        num_targets = torch.as_tensor(num_targets)
    if num_targets.dtype.is_floating_point or num_targets.dtype.is_complex or num_targets.dtype == torch.bool:
        raise ValueError(f"num_targets must be an integer tensor, got {num_targets.dtype}")
    if num_targets.shape != (B,):
        raise ValueError(f"num_targets must have shape (B,) = ({B},), got {tuple(num_targets.shape)}")
    on_host = num_targets.device.type == "cpu" and not torch.compiler.is_compiling()
    if on_host and B and bool(((num_targets < 0) | (num_targets > T)).any()):
        raise ValueError(f"num_targets must lie in [0, T] = [0, {T}], got {num_targets.tolist()}")
    return num_targets.to(device=device, dtype=torch.int64)


def batched_linear_sum_assignment(
    cost: torch.Tensor, num_targets: torch.Tensor | None = None, maximize: bool = False, backend: str = "auto"
) -> Assignment:
    """Solve `B` rectangular assignment problems exactly as SciPy would, one at a time.

    Args:
        cost: `(B, Q, T)` queries x targets, float16 / bfloat16 / float32 / float64 (solved in float64).
            `+inf` forbids a pair; NaN and `-inf` make a problem invalid.
        num_targets: `(B,)` integer tensor; columns `>= num_targets[b]` are padding. Default: all `T` real.
            On CUDA its range is checked in the kernel (status 3) rather than on the host.
        maximize: maximise the total instead (the cost is negated).
        backend: `"auto"`, `"triton"` or `"scipy"`.

    Returns:
        An `Assignment`; call `.check()` to raise on failed problems and `.indices()` for DETR's lists.
    """
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor, got {type(cost).__name__}")
    if cost.dim() != 3:
        raise ValueError(f"cost must have shape (B, Q, T), got {cost.dim()} dimensions")
    if cost.dtype not in _FLOAT_DTYPES:
        if cost.dtype.is_complex:
            raise ValueError(f"cost must be real, got {cost.dtype}")
        cost = cost.to(torch.float64)  # bool / integer costs, as SciPy accepts them
    B, _, T = cost.shape
    num_targets = _check_num_targets(num_targets, B, T, cost.device)
    use_triton = _want_triton(backend, cost.device)
    query_for_target, status = torch.ops.tritonvision.lsap_solve(cost.detach(), num_targets, bool(maximize), use_triton)
    return Assignment(query_for_target, status)


def linear_sum_assignment(cost_matrix, maximize: bool = False, backend: str = "auto"):
    """Drop-in for `scipy.optimize.linear_sum_assignment`: `(row_ind, col_ind)` int64 NumPy arrays, rows sorted.

    Accepts what SciPy accepts (nested lists, NumPy arrays of any real dtype, bool included) and torch tensors,
    which stay on their device for the solve.
    """
    if isinstance(cost_matrix, torch.Tensor):
        matrix = cost_matrix.detach()
        if matrix.dim() != 2:
            raise ValueError(f"expected a matrix (2-D array), got a {matrix.dim()} array")
        if matrix.dtype.is_complex:
            raise TypeError("float() argument must be a string or a real number, not 'complex'")
        if matrix.dtype not in _FLOAT_DTYPES:
            matrix = matrix.to(torch.float64)
    else:
        if isinstance(cost_matrix, np.ndarray) or hasattr(cost_matrix, "__array__"):
            array = np.asarray(cost_matrix)
            if not np.can_cast(array.dtype, np.float64, "safe"):  # SciPy converts arrays with the 'safe' rule
                raise TypeError(
                    f"Cannot cast array data from {array.dtype!r} to dtype('float64') according to the rule 'safe'"
                )
        array = np.asarray(cost_matrix, dtype=np.float64)  # the conversion errors are SciPy's too
        if array.ndim != 2:
            raise ValueError(f"expected a matrix (2-D array), got a {array.ndim} array")
        matrix = torch.from_numpy(np.ascontiguousarray(array))
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    result = batched_linear_sum_assignment(matrix[None], None, maximize=maximize, backend=backend).check()
    rows, cols = result.indices()[0]
    return rows.numpy(), cols.numpy()


def detr_matching_cost(
    logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    target_labels: torch.Tensor,
    target_boxes: torch.Tensor,
    num_targets: torch.Tensor,
    class_cost: float = 1.0,
    bbox_cost: float = 5.0,
    giou_cost: float = 2.0,
    backend: str = "auto",
) -> torch.Tensor:
    """DETR's matching cost `(B, Q, T)` float32 for a padded batch, in one launch on the Triton backend.

    `logits (B, Q, C)` (softmax over all C classes, no-object included), `pred_boxes (B, Q, 4)` and
    `target_boxes (B, T, 4)` normalised cxcywh, `target_labels (B, T)` int64, `num_targets (B,)`; padded columns
    are 0. Stack decoder layers on the batch dimension to match them all at once. No gradient flows: compute the
    differentiable loss terms from the matched indices.
    """
    for name, x, rank in (
        ("logits", logits, 3),
        ("pred_boxes", pred_boxes, 3),
        ("target_labels", target_labels, 2),
        ("target_boxes", target_boxes, 3),
    ):
        if not isinstance(x, torch.Tensor) or x.dim() != rank:
            raise ValueError(f"{name} must be a {rank}-D tensor")
    B, Q, _ = logits.shape
    T = target_labels.shape[1]
    if pred_boxes.shape != (B, Q, 4):
        raise ValueError(f"pred_boxes must have shape {(B, Q, 4)}, got {tuple(pred_boxes.shape)}")
    if target_boxes.shape != (B, T, 4):
        raise ValueError(f"target_boxes must have shape {(B, T, 4)}, got {tuple(target_boxes.shape)}")
    if target_labels.shape[0] != B or target_labels.dtype.is_floating_point or target_labels.dtype == torch.bool:
        raise ValueError("target_labels must be an integer tensor of shape (B, T)")
    for name, x in (("pred_boxes", pred_boxes), ("target_labels", target_labels), ("target_boxes", target_boxes)):
        if x.device != logits.device:
            raise ValueError(f"{name} is on {x.device}, logits on {logits.device}")
    num_targets = _check_num_targets(num_targets, B, T, logits.device)
    use_triton = _want_triton(backend, logits.device)
    return torch.ops.tritonvision.detr_matching_cost(
        logits.detach(),
        pred_boxes.detach(),
        target_labels.to(torch.int64),
        target_boxes.detach(),
        num_targets,
        float(class_cost),
        float(bbox_cost),
        float(giou_cost),
        use_triton,
    )
