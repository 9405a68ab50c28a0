"""Tools (scanpy style): AnnData / MuData in, results written back into it.

- clustering: :func:`cluster`, :func:`cluster_embedding`
- label transfer: :func:`transfer_labels`, :func:`check_annotations`, :func:`annotation_flags`,
  :func:`confusion_groups`, :func:`neighbour_flags`,
  :func:`rate_threshold`, :func:`otsu_threshold`; a saved transfer model (``transfer_labels(..., save_model=DIR)``)
  labels a new query with :func:`map_query` (:func:`load_transfer_model` reads it)
- ATAC-only embeddings: :func:`embed_atac`
- paired integration: :func:`integrate`; a saved integration model (``integrate(..., save_model=DIR)``)
  embeds new paired cells with :func:`map_paired` (:func:`load_integration_model` reads it)
- downstream: :func:`subclusters`, :func:`label_consistency`, :func:`trajectory`

Methods come from the registry (``omics_cl.models``); read results back with ``omics_cl.get``.
"""
from omics_cl.tl._annotation_rules import annotation_flags, confusion_groups, neighbour_flags
from omics_cl.tl._annotations import check_annotations
from omics_cl.tl._cluster import cluster, cluster_embedding
from omics_cl.tl._downstream import label_consistency, subclusters, trajectory
from omics_cl.tl._embed_atac import embed_atac
from omics_cl.tl._integrate import integrate
from omics_cl.tl._map import load_transfer_model, map_query
from omics_cl.tl._map_paired import load_integration_model, map_paired
from omics_cl.tl._novelty import otsu_threshold, rate_threshold
from omics_cl.tl._transfer import transfer_labels

__all__ = [
    "annotation_flags",
    "check_annotations",
    "cluster",
    "cluster_embedding",
    "confusion_groups",
    "embed_atac",
    "integrate",
    "label_consistency",
    "load_integration_model",
    "load_transfer_model",
    "map_paired",
    "map_query",
    "neighbour_flags",
    "otsu_threshold",
    "rate_threshold",
    "subclusters",
    "trajectory",
    "transfer_labels",
]
