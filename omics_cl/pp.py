"""Preprocessing (scanpy style)."""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.data import gene_activity as ga
from omics_cl.data.counts import mito_fraction, row_chunks, validated_counts


def filter_mito(adata: ad.AnnData, max_fraction: float = 0.2, layer: str | None = None) -> int:
    """Optional QC of METHODS.md section 1: drop cells whose mitochondrial fraction exceeds ``max_fraction``.

    Stores ``obs["mito_fraction"]``, subsets ``adata`` in place and returns the number of cells removed.

    Parameters
    ----------
    adata
        Cells x genes AnnData of raw counts; subset in place.
    max_fraction
        Largest mitochondrial fraction kept.
    layer
        Layer holding the raw counts (``None``: ``X``).

    Returns
    -------
    int
        Number of cells removed.
    """
    frac = mito_fraction(adata, layer)
    adata.obs["mito_fraction"] = frac
    keep = frac <= max_fraction
    removed = int((~keep).sum())
    if removed == adata.n_obs:
        raise ValueError(f"every cell has mitochondrial fraction above {max_fraction}; nothing would remain")
    if removed:
        adata._inplace_subset_obs(np.flatnonzero(keep))
    return removed


def gene_activity(atac: ad.AnnData, annotation=None, upstream: int = 2000, layer: str | None = None,
                  links: sp.spmatrix | None = None, link_genes=None) -> ad.AnnData:
    """Cells x genes gene-activity AnnData: ATAC counts summed over peaks that overlap each gene's
    body extended ``upstream`` bp before its TSS (strand-aware).

    ``annotation``: a GTF / GFF3 / BED / TSV path or a DataFrame (see ``omics_cl.data.gene_activity``).
    Instead, ``links`` (a sparse peaks x genes matrix, or genes x peaks) with ``link_genes`` (its gene
    names) gives the peak -> gene map directly. Peaks are read from ``var`` columns
    (chrom/chromStart/chromEnd and similar) or parsed from peak names. The ATAC matrix stays sparse.

    Parameters
    ----------
    atac
        Cells x peaks AnnData of raw ATAC counts.
    annotation
        Gene annotation: a GTF / GFF3 / BED / TSV path or a DataFrame.
    upstream
        Bases before the TSS added to each gene body.
    layer
        Layer holding the ATAC counts (``None``: ``X``).
    links
        Sparse peaks x genes (or genes x peaks) map used instead of ``annotation``.
    link_genes
        Gene names of the columns of ``links``.

    Returns
    -------
    AnnData
        Cells x genes gene activity (sparse), with ``obs`` copied from ``atac``.
    """
    counts = validated_counts(atac, layer, "ATAC counts")
    if links is not None:
        if link_genes is None:
            raise ValueError("links needs link_genes, the gene name of each of its gene columns")
        link_genes = pd.Index(np.asarray(link_genes, dtype=str))
        links = sp.csr_matrix(links, dtype=np.float32)
        if links.shape == (len(link_genes), atac.n_vars) and links.shape != (atac.n_vars, len(link_genes)):
            links = links.T.tocsr()
        if links.shape != (atac.n_vars, len(link_genes)):
            raise ValueError(f"links has shape {links.shape}; expected peaks x genes = ({atac.n_vars}, "
                             f"{len(link_genes)})")
        overlaps, var = links, pd.DataFrame({"n_peaks": np.diff(links.tocsc().indptr)}, index=link_genes)
        source = "links"
    else:
        if annotation is None:
            raise ValueError("give an annotation (GTF, GFF3, BED or TSV) or links with link_genes")
        peaks = ga.peak_coordinates(atac.var, atac.var_names)
        genes = ga.read_annotation(annotation)
        overlaps, var = ga.merge_genes_by_name(ga.peak_gene_overlaps(peaks, genes, upstream), genes)
        source = str(annotation) if not isinstance(annotation, pd.DataFrame) else "DataFrame"
    blocks = [sp.csr_matrix(rows, dtype=np.float32) @ overlaps for _, _, rows in row_chunks(counts)]
    out = ad.AnnData(sp.vstack(blocks).tocsr(), obs=atac.obs.copy(), var=var)
    out.uns["omics_cl"] = {"gene_activity": {"source": source, "upstream": upstream,
                                             "n_peaks_linked": int((overlaps.getnnz(axis=1) > 0).sum())}}
    return out
