"""The batched Hungarian solver must give SciPy's exact assignment (same indices, not only the same cost).

Without a GPU the Triton kernel runs under the interpreter; its cost is per operation, so problems are batched
into few launches and kept small, with a handful of larger ones.
"""

import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment as scipy_lsa

from tritonvision.kernels import hungarian
from tritonvision.kernels.hungarian import Assignment, batched_linear_sum_assignment, linear_sum_assignment

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
BACKENDS = ["scipy", "triton"]
INVALID = "matrix contains invalid numeric entries"
INFEASIBLE = "cost matrix is infeasible"


def scipy_reference(cost: torch.Tensor, num_targets: torch.Tensor, maximize=False):
    """query_for_target and status straight from SciPy, problem by problem."""
    B, _, T = cost.shape
    out = np.full((B, T), -1, dtype=np.int64)
    status = np.zeros(B, dtype=np.int32)
    host = cost.double().cpu().numpy()
    for b, n in enumerate(num_targets.tolist()):
        try:
            rows, cols = scipy_lsa(host[b, :, :n], maximize=maximize)
        except ValueError as err:
            status[b] = 1 if str(err) == INFEASIBLE else 2
            continue
        out[b, cols] = rows
    return torch.from_numpy(out), torch.from_numpy(status)


def assert_same_as_scipy(cost, num_targets=None, maximize=False):
    B, Q, T = cost.shape
    if num_targets is None:
        num_targets = torch.full((B,), T, dtype=torch.int64)
    res = batched_linear_sum_assignment(cost.to(DEVICE), num_targets.to(DEVICE), maximize, backend="triton")
    ref_qft, ref_status = scipy_reference(cost, num_targets, maximize)
    qft, status = res.query_for_target.cpu(), res.status.cpu()
    assert qft.dtype == torch.int64 and status.dtype == torch.int32
    assert torch.equal(status, ref_status)
    mismatch = torch.nonzero((qft != ref_qft).any(1)).flatten().tolist()
    assert not mismatch, f"{len(mismatch)} problems differ from SciPy, first {mismatch[:5]}"
    # validity and optimal cost, independently of the comparison above
    host = cost.double()
    for b, (rows, cols) in enumerate(res.indices()):
        if status[b] != 0:
            continue
        n = int(num_targets[b])
        assert len(rows) == min(Q, n) and len(set(rows.tolist())) == len(rows)
        assert torch.equal(rows, torch.sort(rows).values)
        if n <= Q:
            assert torch.equal(torch.sort(cols).values, torch.arange(n))
        r, c = scipy_lsa(host[b, :, :n].numpy(), maximize=maximize)
        assert float(host[b, rows, cols].sum()) == float(host[b, r, c].sum())
    return res


def ragged(B, T, gen):
    return torch.randint(0, T + 1, (B,), generator=gen)


# ------------------------------------------------------------------------------------ random problems vs SciPy


@pytest.mark.interpret
@pytest.mark.parametrize("Q,T,B", [(12, 7, 600), (7, 12, 400), (12, 12, 400), (1, 6, 200), (6, 1, 200), (3, 9, 300)])
def test_random_ragged_matches_scipy(Q, T, B):
    gen = torch.Generator().manual_seed(Q * 100 + T)
    cost = torch.rand(B, Q, T, generator=gen, dtype=torch.float64)
    assert_same_as_scipy(cost, ragged(B, T, gen))


@pytest.mark.interpret
def test_integer_costs_with_ties():
    gen = torch.Generator().manual_seed(1)
    cost = torch.randint(0, 3, (500, 9, 9), generator=gen).double()
    assert_same_as_scipy(cost, ragged(500, 9, gen))
    cost = torch.randint(0, 2, (300, 5, 11), generator=gen).float()
    assert_same_as_scipy(cost, ragged(300, 11, gen))


@pytest.mark.interpret
def test_constant_matrices():
    shapes = [(8, 8), (8, 3), (3, 8), (1, 4), (4, 1)]
    for Q, T in shapes:
        cost = torch.full((4, Q, T), 7.0)
        nt = torch.tensor([T, max(T - 1, 0), 1, 0])
        assert_same_as_scipy(cost, nt)
    res = batched_linear_sum_assignment(torch.ones(1, 8, 8), backend="triton")
    assert torch.equal(res.query_for_target[0].cpu(), torch.arange(8))  # SciPy's issue #11602


@pytest.mark.interpret
def test_near_ties_need_float64_duals():
    gen = torch.Generator().manual_seed(2)
    cost = 1000.0 + 1e-3 * torch.rand(300, 10, 10, generator=gen, dtype=torch.float64)
    assert_same_as_scipy(cost, ragged(300, 10, gen))


@pytest.mark.interpret
def test_huge_dynamic_range():
    gen = torch.Generator().manual_seed(3)
    cost = 10.0 ** (16 * torch.rand(300, 10, 8, generator=gen, dtype=torch.float64) - 8)
    assert_same_as_scipy(cost, ragged(300, 8, gen))


@pytest.mark.interpret
def test_forbidden_pairs_feasible_and_infeasible():
    gen = torch.Generator().manual_seed(4)
    for Q, T, p in [(8, 8, 0.5), (10, 5, 0.6), (5, 10, 0.6)]:
        cost = torch.rand(300, Q, T, generator=gen, dtype=torch.float64)
        cost[torch.rand(cost.shape, generator=gen) < p] = float("inf")
        res = assert_same_as_scipy(cost, ragged(300, T, gen))
        assert (res.status == 1).any() and (res.status == 0).any()


@pytest.mark.interpret
def test_maximize_matches_scipy():
    gen = torch.Generator().manual_seed(5)
    cost = torch.randint(-5, 5, (300, 7, 9), generator=gen).double()
    assert_same_as_scipy(cost, ragged(300, 9, gen), maximize=True)
    cost = torch.rand(200, 9, 6, generator=gen, dtype=torch.float64)
    cost[0, 0, 0] = float("inf")  # +inf negated is -inf: invalid when maximising, as in SciPy
    cost[1, 0, 0] = -float("inf")  # -inf negated is a forbidden pair
    res = assert_same_as_scipy(cost, torch.full((200,), 6), maximize=True)
    assert res.status[0] == 2 and res.status[1] == 0


@pytest.mark.interpret
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_solved_in_float64(dtype):
    gen = torch.Generator().manual_seed(6)
    cost = torch.rand(200, 9, 7, generator=gen).to(dtype)
    assert_same_as_scipy(cost, ragged(200, 7, gen))  # the reference sees the same values, upcast


@pytest.mark.interpret
def test_larger_problems():
    gen = torch.Generator().manual_seed(7)
    assert_same_as_scipy(torch.rand(3, 100, 20, generator=gen), torch.tensor([20, 13, 1]))
    assert_same_as_scipy(torch.rand(1, 64, 64, generator=gen, dtype=torch.float64))
    assert_same_as_scipy(torch.rand(2, 20, 60, generator=gen, dtype=torch.float64), torch.tensor([60, 21]))


@pytest.mark.interpret
def test_sparse_integer_problems_like_scipy_suite():
    """SciPy's own comparison with csgraph: sparse integer problems (100x100, 6 %), many infeasible; smaller here."""
    rng = np.random.default_rng(12342309)
    dense = np.full((6, 32, 32), np.inf)
    for b in range(6):
        mask = rng.random((32, 32)) < 0.15
        dense[b][mask] = rng.integers(1, 100, int(mask.sum()))
    assert_same_as_scipy(torch.from_numpy(dense))


@pytest.mark.interpret
def test_invalid_entries_and_check():
    cost = torch.rand(4, 3, 3, dtype=torch.float64)
    cost[1, 0, 0] = float("nan")
    cost[2, 2, 1] = -float("inf")
    cost[3, :, 0] = float("inf")
    for backend in BACKENDS:
        res = batched_linear_sum_assignment(cost, backend=backend)
        assert res.status.tolist() == [0, 2, 2, 1]
        assert (res.query_for_target[1:] == -1).all()
        with pytest.raises(ValueError, match=INVALID):
            res.check()
        ok = batched_linear_sum_assignment(cost[[3]], backend=backend)
        with pytest.raises(ValueError, match=INFEASIBLE):
            ok.check()
        # a NaN in a padded column is ignored
        padded = batched_linear_sum_assignment(cost[[1]], torch.tensor([0]), backend=backend)
        assert padded.check().status.tolist() == [0]


# ----------------------------------------------------------------------------------- result object and shapes


@pytest.mark.interpret
@pytest.mark.parametrize("backend", BACKENDS)
def test_indices_follow_detr_convention(backend):
    cost = torch.tensor([[[4.0, 1.0], [2.0, 0.0], [0.0, 5.0]], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    res = batched_linear_sum_assignment(cost, torch.tensor([2, 0]), backend=backend).check()
    assert isinstance(res, Assignment)
    (q0, t0), (q1, t1) = res.indices()
    assert q0.tolist() == [1, 2] and t0.tolist() == [1, 0]
    assert q0.dtype == t0.dtype == torch.int64
    assert q1.numel() == 0 and t1.numel() == 0
    assert res.query_for_target.tolist() == [[2, 1], [-1, -1]]


@pytest.mark.interpret
@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_shapes(backend):
    for shape in [(0, 4, 3), (2, 0, 3), (2, 4, 0)]:
        res = batched_linear_sum_assignment(torch.rand(shape), backend=backend)
        assert res.query_for_target.shape == (shape[0], shape[2])
        assert res.status.shape == (shape[0],) and (res.status == 0).all()
        assert (res.query_for_target == -1).all()
    res = batched_linear_sum_assignment(torch.rand(3, 1, 4), torch.tensor([4, 1, 0]), backend=backend).check()
    assert [len(q) for q, _ in res.indices()] == [1, 1, 0]


def test_validation_errors():
    cost = torch.rand(2, 3, 4)
    with pytest.raises(ValueError, match="shape"):
        batched_linear_sum_assignment(torch.rand(3, 4))
    with pytest.raises(ValueError, match="integer"):
        batched_linear_sum_assignment(cost, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        batched_linear_sum_assignment(cost, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="lie in"):
        batched_linear_sum_assignment(cost, torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="lie in"):
        batched_linear_sum_assignment(cost, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="backend"):
        batched_linear_sum_assignment(cost, backend="cuda")
    with pytest.raises(TypeError, match="torch.Tensor"):
        batched_linear_sum_assignment(cost.numpy())


def test_backend_resolution(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("TRITONVISION_FORCE_TRITON", raising=False)
    assert hungarian._want_triton("auto", cpu) is False
    assert hungarian._want_triton("scipy", cpu) is False
    if hungarian.is_interpreted():
        assert hungarian._want_triton("triton", cpu) is True
        monkeypatch.setenv("TRITONVISION_FORCE_TRITON", "1")
        assert hungarian._want_triton("auto", cpu) is True
    monkeypatch.setattr(hungarian, "is_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        hungarian._want_triton("triton", cpu)
    monkeypatch.setattr(hungarian, "HAS_TRITON", False)
    with pytest.raises(RuntimeError, match="triton"):
        hungarian._want_triton("triton", torch.device("cuda"))
    assert hungarian._want_triton("auto", torch.device("cuda")) is False


# ------------------------------------------------------------------ drop-in: SciPy's own test suite, both backends

SCIPY_CASES = [
    ([[400, 150, 400], [400, 450, 600], [300, 225, 300]], [150, 400, 300]),
    ([[400, 150, 400, 1], [400, 450, 600, 2], [300, 225, 300, 3]], [150, 2, 300]),
    ([[10, 10, 8], [9, 8, 1], [9, 7, 4]], [10, 1, 7]),
    ([[10, 10, 8, 11], [9, 8, 1, 1], [9, 7, 4, 10]], [10, 1, 4]),
    ([[10, np.inf, np.inf], [np.inf, np.inf, 1], [np.inf, 7, np.inf]], [10, 1, 7]),
]


@pytest.mark.interpret
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sign", [-1, 1])
@pytest.mark.parametrize("case", range(len(SCIPY_CASES)))
def test_scipy_small_inputs(backend, sign, case):
    matrix, expected = SCIPY_CASES[case]
    cost = sign * np.array(matrix)
    expected = sign * np.array(expected)
    for c, exp in ((cost, expected), (cost.T, np.sort(expected))):
        rows, cols = linear_sum_assignment(c, maximize=sign == -1, backend=backend)
        assert rows.dtype == cols.dtype == np.int64
        np.testing.assert_array_equal(rows, np.sort(rows))
        got = np.array(c[rows, cols]).flatten()
        np.testing.assert_array_equal(exp, got if c is cost else np.sort(got))
        ref = scipy_lsa(c, maximize=sign == -1)
        np.testing.assert_array_equal(rows, ref[0])
        np.testing.assert_array_equal(cols, ref[1])


@pytest.mark.interpret
@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_scipy_input_handling(backend):
    def lsa(c, **kw):
        return linear_sum_assignment(c, backend=backend, **kw)

    with pytest.raises(ValueError, match=r"expected a matrix \(2-D array\), got a 1 array"):
        lsa([1, 2, 3])
    with pytest.raises(ValueError, match=r"expected a matrix \(2-D array\), got a 3 array"):
        lsa(torch.zeros(1, 2, 2))
    C = [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(lsa(C), lsa(np.asarray(C)))
    np.testing.assert_array_equal(lsa(C), scipy_lsa(C))
    np.testing.assert_array_equal(lsa(np.matrix(C)), scipy_lsa(C))
    np.testing.assert_array_equal(lsa(torch.tensor(C)), scipy_lsa(C))
    eye = np.identity(3)
    np.testing.assert_array_equal(lsa(eye.astype(np.bool_)), lsa(eye))
    with pytest.raises(TypeError, match="Cannot cast array data"):
        lsa(eye.astype(str))
    with pytest.raises(ValueError, match="contains invalid numeric entries"):
        lsa(np.diag([np.nan, 1, 1]))
    with pytest.raises(ValueError, match="contains invalid numeric entries"):
        lsa(np.diag([1, -np.inf, 1]))
    inf_col = np.identity(3)
    inf_col[:, 0] = np.inf
    with pytest.raises(ValueError, match="cost matrix is infeasible"):
        lsa(inf_col)
    rows, cols = lsa(np.ones((8, 8)))
    np.testing.assert_array_equal(rows, np.arange(8))
    np.testing.assert_array_equal(cols, np.arange(8))
    for shape in [(0, 0), (0, 2), (3, 0)]:
        rows, cols = lsa(np.empty(shape))
        assert len(rows) == len(cols) == 0 and rows.dtype == np.int64


# ------------------------------------------------------------------------------ operators and remote-code copies


@pytest.mark.interpret
@pytest.mark.parametrize("use_triton", [False, True])
def test_opcheck_lsap_solve(use_triton):
    cost = torch.rand(3, 5, 4, dtype=torch.float64)
    nt = torch.tensor([4, 2, 0])
    torch.library.opcheck(torch.ops.tritonvision.lsap_solve.default, (cost, nt, False, use_triton))
    torch.library.opcheck(torch.ops.tritonvision.lsap_solve.default, (cost.float(), nt, True, use_triton))


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        qft, status = torch.ops.tritonvision.lsap_solve(
            torch.empty(6, 100, 20), torch.empty(6, dtype=torch.int64), False, True
        )
    assert qft.shape == (6, 20) and qft.dtype == torch.int64
    assert status.shape == (6,) and status.dtype == torch.int32


def test_flat_remote_code_copy_imports_twice(tmp_path, monkeypatch):
    """A saved trust_remote_code folder holds the kernel files flat; importing it must not re-register ops."""
    kernels = Path(hungarian.__file__).parent
    pkg = tmp_path / "remote_copy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("hungarian.py", "hungarian_triton.py", "matching_cost.py"):
        shutil.copy(kernels / name, pkg / name)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        copy = importlib.import_module("remote_copy_pkg.hungarian")
        res = copy.batched_linear_sum_assignment(torch.rand(2, 4, 3), backend="scipy").check()
        assert res.query_for_target.shape == (2, 3)
    finally:
        for name in [m for m in sys.modules if m.startswith("remote_copy_pkg")]:
            del sys.modules[name]


# ------------------------------------------------------------------------------------------- GPU, real sizes


@pytest.mark.gpu
def test_gpu_detr_sizes_match_scipy():
    gen = torch.Generator().manual_seed(8)
    B = 64 * 6
    cost = torch.rand(B, 100, 90, generator=gen)
    assert_same_as_scipy(cost, torch.randint(0, 91, (B,), generator=gen))
    assert_same_as_scipy(torch.rand(4, 900, 90, generator=gen), torch.tensor([90, 7, 1, 0]))
    assert_same_as_scipy(torch.rand(2, 300, 300, generator=gen, dtype=torch.float64))


@pytest.mark.gpu
def test_gpu_cuda_graph_capture():
    cost = torch.rand(12, 100, 20, device="cuda")
    nt = torch.randint(0, 21, (12,), device="cuda")
    batched_linear_sum_assignment(cost, nt, backend="triton")  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        res = batched_linear_sum_assignment(cost, nt, backend="triton")
    cost.copy_(torch.rand_like(cost))
    graph.replay()
    ref = batched_linear_sum_assignment(cost, nt, backend="scipy")
    assert torch.equal(res.query_for_target, ref.query_for_target)
