"""Inputs of the peak-gene guided VAE (``omics_cl.core.guided_vae``): the guidance graph linking genes and
peaks, and the source of unpaired RNA / ATAC minibatches. Nothing here imports flax."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omics_cl.data import gene_activity as ga


@dataclass(frozen=True)
class GuidanceGraph:
    """Symmetric graph over ``n_genes`` genes (vertices ``0..n_genes-1``) then ``n_peaks`` peaks: an edge where
    the peak overlaps the gene's body extended 2 kb before its TSS, plus self-loops. ``weight``: the edge's
    ``1 / sqrt(deg(src) deg(dst))`` (one GCN layer)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    n_genes: int
    n_peaks: int

    @property
    def n_vertices(self) -> int:
        return self.n_genes + self.n_peaks


def guidance_graph(peaks: pd.DataFrame, annotation, gene_names) -> GuidanceGraph:
    """The graph linking ``gene_names`` (matched to the annotation's names) to ``peaks`` (``chrom, start,
    end`` rows). ``ValueError`` when no peak overlaps one of the genes."""
    genes = ga.read_annotation(annotation)
    overlaps, merged = ga.merge_genes_by_name(ga.peak_gene_overlaps(peaks, genes), genes)
    position = {name: i for i, name in enumerate(np.asarray(gene_names, dtype=str))}
    overlaps = overlaps.tocoo()
    gene = np.array([position.get(name, -1) for name in merged.index], dtype=np.int64)[overlaps.col]
    keep = gene >= 0
    if not keep.any():
        raise ValueError(f"no peak overlaps any of the {len(position)} reference genes (e.g. "
                         f"{list(position)[:3]}); are the annotation's gene names those of the reference?")
    n_genes, n_peaks = len(position), len(peaks)
    links = np.stack([gene[keep], n_genes + overlaps.row[keep].astype(np.int64)], 1)
    loops = np.arange(n_genes + n_peaks)
    src = np.concatenate([links[:, 0], links[:, 1], loops])
    dst = np.concatenate([links[:, 1], links[:, 0], loops])
    degree = np.bincount(dst, minlength=n_genes + n_peaks).astype(np.float64)
    weight = (1.0 / np.sqrt(degree[src] * degree[dst])).astype(np.float32)
    return GuidanceGraph(src, dst, weight, n_genes, n_peaks)


class UnpairedSource:
    """Minibatches of unpaired RNA and ATAC cells for the guided VAE. Batch position ``i`` holds RNA cell
    ``i mod n_rna`` and ATAC cell ``i mod n_atac`` (``n_obs``: the larger count, so an epoch visits every cell of
    both); each batch also holds ``peak_subset`` peaks whose counts it reconstructs, ``edge_batch`` edges of the
    graph (self-loops included) and ``negatives`` random vertices per edge. These draws come from a generator
    seeded by the batch's cell indices, so a batch is a pure function of its indices (resuming reproduces a run)."""

    def __init__(self, rna_x: np.ndarray, rna_counts, atac_x: np.ndarray, atac_counts, graph: GuidanceGraph,
                 peak_subset: int, edge_batch: int, negatives: int):
        self.rna_x, self.atac_x = rna_x, atac_x
        self.rna_counts, self.atac_counts = sp.csr_matrix(rna_counts), sp.csr_matrix(atac_counts)
        self.rna_library = np.maximum(np.asarray(self.rna_counts.sum(1), dtype=np.float32).ravel(), 1.0)
        self.graph = graph
        self.peak_subset = min(peak_subset, graph.n_peaks) if peak_subset else graph.n_peaks
        self.edge_batch, self.negatives = edge_batch, negatives
        self.n_obs = max(len(rna_x), len(atac_x))

    def get(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        indices = np.asarray(indices)
        rng = np.random.default_rng(indices.astype(np.int64).tolist())
        rna, atac = indices % len(self.rna_x), indices % len(self.atac_x)
        if self.peak_subset < self.graph.n_peaks:
            peaks = np.sort(rng.choice(self.graph.n_peaks, self.peak_subset, replace=False))
        else:
            peaks = np.arange(self.graph.n_peaks)
        atac_counts = self.atac_counts[atac][:, peaks].toarray().astype(np.float32)
        edges = rng.integers(0, len(self.graph.src), self.edge_batch)
        return {"rna_x": self.rna_x[rna], "rna_counts": self.rna_counts[rna].toarray().astype(np.float32),
                "rna_library": self.rna_library[rna], "atac_x": self.atac_x[atac], "atac_counts": atac_counts,
                "atac_library": np.maximum(atac_counts.sum(1), 1.0), "peaks": peaks,
                "edges": np.stack([self.graph.src[edges], self.graph.dst[edges]], 1),
                "negatives": rng.integers(0, self.graph.n_vertices, (self.edge_batch, self.negatives))}
