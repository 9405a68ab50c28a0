"""benchmarks/transfer_scaling.py: its synthetic atlases and the profile phases it reads."""
import cProfile

import numpy as np
import pytest
from conftest import load_benchmark

from omics_cl import tl


@pytest.fixture(scope="module")
def transfer_scaling():
    return load_benchmark("transfer_scaling")


def test_synthetic_pair_is_seeded_and_holds_an_unseen_type(transfer_scaling):
    rna, atac, activity = transfer_scaling.synthetic_pair(400, 600, n_genes=50, peaks_per_gene=3, seed=1)
    again = transfer_scaling.synthetic_pair(400, 600, n_genes=50, peaks_per_gene=3, seed=1)[1]
    assert (atac.X != again.X).nnz == 0
    assert atac.shape == (600, 50 * 4) and rna.shape == (400, 50) and activity.shape == (600, 50)
    unseen = f"t{transfer_scaling.N_TYPES - 1}"
    assert unseen not in set(rna.obs["cell_type"]) and unseen in set(atac.obs["cell_type"])
    assert np.all(np.asarray(atac.X.sum(1)).ravel() > 0)
    peaks = atac.X.toarray()
    gene = 7  # a gene's activity is the sum of its own peaks (peaks 3g .. 3g + 2)
    np.testing.assert_array_equal(activity.X.toarray()[:, gene], peaks[:, 3 * gene:3 * gene + 3].sum(1))


def test_every_phase_is_found_in_the_profile(transfer_scaling):
    rna, atac, activity = transfer_scaling.synthetic_pair(300, 300, n_genes=200, seed=0)
    profile = cProfile.Profile()
    profile.enable()
    tl.transfer_labels(rna, atac, "cell_type", gene_activity=activity, epochs=1, hidden=32, latent=8,
                       progress=False)
    profile.disable()
    seconds = transfer_scaling.phase_seconds(profile)
    assert set(seconds) == {f"{p}_s" for p in transfer_scaling.PHASES}
    assert all(v > 0 for v in seconds.values()), seconds
