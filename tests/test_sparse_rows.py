"""Sparse matrices built in row blocks equal the ones scipy stacks at once."""
import numpy as np
import scipy.sparse as sp

from omics_cl.data.sparse_rows import hstack_rows, stack_rows


def same_csr(a, b):
    return a.shape == b.shape and all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("data", "indices", "indptr"))


def test_hstack_rows_equals_scipy_hstack_entry_for_entry():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(500, 6)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.2] = 0  # zeros of the dense part are not stored, as in csr_matrix(dense)
    a = sp.random(500, 40, density=0.1, random_state=1, format="csr", dtype=np.float32)
    b = sp.random(500, 30, density=0.05, random_state=2, format="csr", dtype=np.float64)
    rows = rng.permutation(500)[:321]
    expected = sp.hstack([sp.csr_matrix(dense), a, b]).tocsr()[rows]
    for chunk_rows in (1, 50, 10_000):
        got = hstack_rows([dense, a, b], rows, chunk_rows=chunk_rows)
        assert same_csr(got, expected) and got.dtype == np.float64


def test_stack_rows_equals_vstack_and_drops_the_blocks():
    blocks = [sp.random(n, 12, density=0.3, random_state=n, format="csr", dtype=np.float32) for n in (5, 0, 9)]
    expected = sp.vstack(blocks).tocsr()
    got = stack_rows(blocks, 12)
    assert same_csr(got, expected) and blocks == [None, None, None]
