"""One file per method; each clustering method is ``embed(prepared, seed, progress, **params) -> (Z, info)``.

Register a new method with one line in ``CLUSTER_METHODS``.
"""
from omics_cl.models.cae import embed_ae, embed_cae
from omics_cl.models.pca import embed_pca
from omics_cl.models.scinno import embed_scinno
from omics_cl.models.siamese import embed_siamese

CLUSTER_METHODS = {
    "pca": embed_pca,
    "ae": embed_ae,
    "cae": embed_cae,
    "scinno": embed_scinno,
    "siamese": embed_siamese,
}

# methods that cluster cells themselves (prediction = argmax membership) and take ``n_clusters``
SELF_CLUSTERING = frozenset({"scinno", "siamese"})
