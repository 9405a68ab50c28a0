"""Reference class signatures and a query cell's support for its label (``omics_cl.data.signatures``)."""
import numpy as np
import pytest
import scipy.sparse as sp

from omics_cl.data.signatures import (
    class_signatures,
    class_support,
    label_support,
    quantile_rank,
    ranked_novelty,
    standardised,
)


def test_class_signature_is_the_class_mean_minus_the_other_classes_mean():
    x = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    labels = np.array([0, 0, 1, 2])
    got = class_signatures(sp.csr_matrix(x), labels, 3)
    means = np.array([[1, 0, 0.5], [0, 1, 0], [0, 0, 1]])
    expected = np.vstack([means[k] - np.delete(means, k, 0).mean(0) for k in range(3)])
    assert np.allclose(got, expected) and got.dtype == np.float32
    assert np.allclose(class_signatures(x, labels, 3), got)  # dense input alike


def test_class_signatures_refuse_bad_labels():
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="labels for"):
        class_signatures(x, np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="without cells: \\[2\\]"):
        class_signatures(x, np.array([0, 1, 1]), 3)


def test_support_weights_a_cells_features_by_each_class_signature():
    signatures = np.array([[1.0, 1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]], dtype=np.float32)
    cells = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    support = class_support(cells, signatures)
    assert np.allclose(support, [[1, -1], [1, -1], [0, 0], [0, 0]])  # class 0's genes, again, half and half, empty
    assert np.allclose(class_support(cells.toarray(), signatures), support)
    assert np.allclose(label_support(support, np.array([0, 1, 0, 1])), [1.0, -1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="query features"):
        class_support(cells[:, :3], signatures)


def test_standardised_columns_and_constant_ones():
    scores = np.array([[1.0, 5.0], [3.0, 5.0]])
    assert np.allclose(standardised(scores), [[-1.0, 0.0], [1.0, 0.0]])


def test_quantile_rank_averages_ties():
    assert np.allclose(quantile_rank(np.array([0.3, 0.1, 0.3, 0.9])), [0.625, 0.25, 0.625, 1.0])


def test_ranked_novelty_weighs_the_two_ranks():
    """High confidence novelty and low support both rank a cell as novel; the weight goes to the support's rank."""
    novelty, support = np.array([0.1, 0.3, 0.2]), np.array([0.5, 0.4, -0.2])
    expected = 0.75 * np.array([1, 3, 2]) / 3 + 0.25 * np.array([1, 2, 3]) / 3
    assert np.allclose(ranked_novelty(novelty, support, 0.25), expected)
    assert np.allclose(ranked_novelty(novelty, support, 0.0), quantile_rank(novelty))
