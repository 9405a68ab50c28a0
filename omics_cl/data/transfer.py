"""RNA + gene activity -> shared feature matrices for label transfer."""
from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.data.counts import counts_matrix, row_chunks, validated_counts
from omics_cl.data.preprocess import fit_lognormalizer


@dataclass(frozen=True)
class TransferInputs:
    """What a label-transfer method trains on: labelled reference features, query features in the same
    gene space, the query's kNN graph (from its own peaks), the number of reference classes, the query's
    peak-space embedding (LSI; optional) and the TF-IDF of its peak counts (``omics_cl.data.lsi.tfidf``,
    cells x peaks; optional)."""

    rna_x: object
    rna_y: np.ndarray
    atac_x: object
    neighbors: np.ndarray
    n_classes: int
    atac_peaks: np.ndarray | None = None
    atac_tfidf: object = None


@dataclass(frozen=True)
class QueryInputs:
    """What a trained transfer method maps a query with: the query's features in the model's gene space, its
    peak-space embedding (LSI of its own peaks; optional), the reference as the model saw it: the latent
    rows of its labelled cells, their class indices and the number of classes, the TF-IDF of the query's peak
    counts (cells x peaks; optional) and the reference's class signatures (``omics_cl.data.signatures``; optional)."""

    atac_x: object
    atac_peaks: np.ndarray | None
    reference_embedding: np.ndarray
    reference_labels: np.ndarray
    n_classes: int
    atac_tfidf: object = None
    class_signatures: np.ndarray | None = None


def shared_genes(rna_genes, activity: ad.AnnData) -> tuple[np.ndarray, np.ndarray]:
    """Column indices ``(rna_idx, activity_idx)`` of genes present in both, matched by name and,
    failing that, by the activity table's ``alt_name`` (older symbols)."""
    rna_genes = pd.Index(np.asarray(rna_genes, dtype=str))
    lookup = {name: i for i, name in enumerate(activity.var_names)}
    if "alt_name" in activity.var:
        for i, alt in enumerate(activity.var["alt_name"]):
            if isinstance(alt, str):
                lookup.setdefault(alt, i)
    pairs = [(i, lookup[g]) for i, g in enumerate(rna_genes) if g in lookup]
    if not pairs:
        raise ValueError(
            f"no shared genes between the RNA reference ({len(rna_genes)} genes, e.g. {list(rna_genes[:3])}) and "
            f"the gene activity matrix ({activity.n_vars} genes, e.g. {list(activity.var_names[:3])}); are both "
            "gene symbols of the same species?")
    rna_idx, act_idx = map(np.asarray, zip(*pairs))
    return rna_idx, act_idx


def _features(x, columns: np.ndarray, mode: str) -> sp.csr_matrix:
    blocks = []
    for _, _, rows in row_chunks(x):
        rows = sp.csr_matrix(rows[:, columns], dtype=np.float32)
        rows.eliminate_zeros()  # a stored zero is no count: binarising would make it 1
        if mode == "binary":
            rows.data[:] = 1.0
        else:
            totals = np.asarray(rows.sum(1)).ravel()
            rows = sp.diags(np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)) @ rows
            rows.data = np.log1p(rows.data)
        blocks.append(sp.csr_matrix(rows))
    return sp.vstack(blocks).tocsr()


def transfer_features(rna: ad.AnnData, activity: ad.AnnData, rna_layer: str | None = None,
                      n_top_genes: int | None = 2000, mode: str = "binary"):
    """Shared genes -> RNA HVGs (seurat_v3 on the RNA counts of shared genes, with ``select_hvg``'s fallback)
    -> binarised (default) or log-normalised features for both. Returns ``(rna_features, activity_features,
    gene_names, hvg_flavor)``."""
    if mode not in ("binary", "lognorm"):
        raise ValueError(f"features must be 'binary' or 'lognorm', got {mode!r}")
    rna_counts = counts_matrix(rna, rna_layer)
    activity_counts = validated_counts(activity, None, "gene activity")
    rna_idx, act_idx = shared_genes(rna.var_names, activity)
    normalizer = fit_lognormalizer(rna_counts[:, rna_idx], n_top_genes)
    rna_idx, act_idx = rna_idx[normalizer.genes], act_idx[normalizer.genes]
    return (_features(rna_counts, rna_idx, mode), _features(activity_counts, act_idx, mode),
            np.asarray(rna.var_names)[rna_idx], normalizer.hvg_flavor)


def query_features(activity: ad.AnnData, genes, mode: str = "binary") -> tuple[sp.csr_matrix, list[str]]:
    """A new query's features in a saved model's gene space: ``activity``'s genes matched to ``genes`` by name
    (then ``alt_name``, as :func:`shared_genes`), transformed as :func:`transfer_features` does; genes the
    query lacks are all-zero columns (``lognorm`` normalises over the genes present). Returns
    ``(features, missing gene names)``; ``ValueError`` when no gene is shared."""
    genes = np.asarray(genes, dtype=str)
    gene_idx, act_idx = shared_genes(genes, activity)
    x = _features(validated_counts(activity, None, "gene activity"), act_idx, mode)
    if len(gene_idx) < len(genes):
        x = sp.csr_matrix((x.data, gene_idx[x.indices], x.indptr), shape=(x.shape[0], len(genes)))
    return x, genes[np.setdiff1d(np.arange(len(genes)), gene_idx)].tolist()
