"""``key_added`` in ``tl.cluster``: runs of one method with other settings side by side, as scanpy's ``key_added``."""
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST

from omics_cl import get, pl, tl
from omics_cl.checks import OTHER_RECORDS


def test_two_runs_of_one_method_sit_side_by_side(counts_adata):
    a = counts_adata
    default = tl.cluster(a, method="pca", n_clusters=3, progress=False)
    before = a.obsm["X_pca"].copy(), a.obs["pca_cluster"].copy()
    fewer = tl.cluster(a, method="pca", n_clusters=3, n_top_genes=40, key_added="pca_40", progress=False)
    assert default["n_features"] == 120 and fewer["n_features"] == 40 and fewer["method"] == "pca"
    np.testing.assert_array_equal(a.obsm["X_pca"], before[0])  # the first run's results are left alone
    assert a.obs["pca_cluster"].equals(before[1])
    assert a.obsm["X_pca_40"].shape[0] == a.n_obs and not np.array_equal(a.obsm["X_pca_40"], before[0])
    assert a.obs["pca_40_cluster"].nunique() == 3 and get.run_record(a, "pca_40")["n_features"] == 40


def test_a_trained_method_writes_its_latent_and_history_under_the_key(counts_adata):
    a = counts_adata
    tl.cluster(a, method="cae", key_added="cae_t1", temperature=0.1, progress=False, **FAST)
    assert {"X_cae_t1", "X_cae_t1_latent"} <= set(a.obsm) and "cae_t1_cluster" in a.obs
    assert not any(k.startswith("X_cae") and not k.startswith("X_cae_t1") for k in a.obsm)
    assert list(a.uns["omics_cl"]) == ["cae_t1"] and a.uns["omics_cl"]["cae_t1"]["params"]["temperature"] == 0.1
    pl.training_history(a, "cae_t1")


@pytest.mark.parametrize("bad,message", [("", "non-empty string"), ("a/b", "without '/'"), (3, "non-empty string"),
                                         ("trajectory", "another tool's record")])
def test_a_bad_key_is_refused_before_any_work(counts_adata, bad, message):
    a = counts_adata
    with pytest.raises(ValueError, match=message):
        tl.cluster(a, method="pca", key_added=bad, progress=False)
    with pytest.raises(ValueError, match=message):
        tl.integrate(rna=a, atac=a.copy(), key_added=bad, progress=False)
    assert "omics_cl" not in a.uns and not a.obsm


def test_every_other_tools_record_name_is_refused_as_a_key():
    """``checks.OTHER_RECORDS`` lists by hand the records that tools other than cluster / integrate / map_paired
    write; a tool added later with a literal record name must join the list."""
    source = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "omics_cl").rglob("*.py"))
    stored = re.findall(r'store_record\(\w+, (?:\w+ or )?"(\w+)"', source)
    assigned = re.findall(r'uns\["omics_cl"\]\["(\w+)"\] =', source)
    written = set(stored) | set(assigned)
    assert written and written == set(OTHER_RECORDS), written
