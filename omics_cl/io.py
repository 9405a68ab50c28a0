"""Readers for what instruments write: 10x Cell Ranger ARC ``.h5`` and ATAC fragment files.

- ``read_10x_multiome(path)``: ``filtered_feature_bc_matrix.h5`` -> MuData (``rna``, ``atac``).
- ``read_fragments(path, peaks=... | tile_size=..., barcodes=...)``: cells x peaks / tiles insertion counts.
- ``gene_activity_from_fragments(path, annotation, barcodes=...)``: cells x genes, straight from fragments.

Fragments are streamed (bounded memory) and counted as Tn5 insertions, like Cell Ranger and ArchR
(see ``omics_cl.data.fragments``).
"""
from omics_cl.data.fragments import gene_activity_from_fragments, read_fragments
from omics_cl.data.readers import read_10x_multiome

__all__ = ["gene_activity_from_fragments", "read_10x_multiome", "read_fragments"]
