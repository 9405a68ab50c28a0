"""One file per method; each clustering method is ``embed(prepared, seed, progress, **params) -> (Z, info)``.

Register a new method with one line in ``CLUSTER_METHODS``.
"""
from omics_cl.models.cae import embed_ae, embed_cae
from omics_cl.models.pca import embed_pca

CLUSTER_METHODS = {
    "pca": embed_pca,
    "ae": embed_ae,
    "cae": embed_cae,
}
