"""Tools (scanpy style): AnnData / MuData in, results written back into it.

- clustering: :func:`cluster`, :func:`cluster_embedding`
- label transfer: :func:`transfer_labels`, :func:`check_annotations`, :func:`annotation_flags`,
  :func:`confusion_groups`,
  :func:`otsu_threshold`
- paired integration: :func:`integrate`
- downstream: :func:`subclusters`, :func:`label_consistency`, :func:`trajectory`

Methods come from the registry (``omics_cl.models``); read results back with ``omics_cl.get``.
"""
from omics_cl.tl._cluster import cluster, cluster_embedding
from omics_cl.tl._downstream import label_consistency, subclusters, trajectory
from omics_cl.tl._integrate import integrate
from omics_cl.tl._transfer import (annotation_flags, check_annotations, confusion_groups, otsu_threshold,
                                  transfer_labels)

__all__ = ["annotation_flags", "check_annotations", "cluster", "confusion_groups", "cluster_embedding", "integrate", "label_consistency",
           "otsu_threshold", "subclusters", "trajectory", "transfer_labels"]
