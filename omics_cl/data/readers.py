"""10x Cell Ranger ARC ``filtered_feature_bc_matrix.h5`` (genes and peaks in one file) -> MuData."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd

from omics_cl.data import gene_activity as ga

MODALITIES = {"Gene Expression": "rna", "Peaks": "atac"}


def read_10x_h5_features(path) -> ad.AnnData:
    """All features of a Cell Ranger (v3+) ``.h5`` through ``scanpy.read_10x_h5(gex_only=False)`` (names as
    in the file, possibly repeated); an unreadable file becomes a ``ValueError`` naming it."""
    import scanpy as sc

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"10x file {path} not found")
    try:
        with h5py.File(path, "r") as f:
            if "matrix" not in f or "features" not in f["matrix"]:
                raise ValueError(f"{path} is not a Cell Ranger feature-barcode matrix (.h5 with /matrix/features); "
                                 f"top-level groups: {list(f)}")
        with warnings.catch_warnings():  # duplicate gene names: the caller makes them unique
            warnings.filterwarnings("ignore", "Variable names are not unique", UserWarning)
            return sc.read_10x_h5(path, gex_only=False)
    except (OSError, KeyError) as err:
        raise ValueError(f"cannot read {path} as a 10x .h5 ({type(err).__name__}: {err}); is the file complete?") from None


def read_10x_multiome(path) -> md.MuData:
    """MuData with ``rna`` (Gene Expression) and ``atac`` (Peaks) from a Cell Ranger ARC ``.h5``.

    ``atac.var`` gets ``chrom, chromStart, chromEnd`` (0-based half-open, as in ``atac_peaks.bed``) from
    the ``interval`` feature field or the peak names; ``rna`` gene names are made unique (scanpy's
    ``var_names_make_unique``), ``var["gene_ids"]`` keeps the Ensembl ids. Any other feature type
    becomes its own modality (``Antibody Capture`` -> ``antibody_capture``). Counts stay sparse.

    Parameters
    ----------
    path
        Cell Ranger ARC ``filtered_feature_bc_matrix.h5``.

    Returns
    -------
    MuData
        Modalities ``rna``, ``atac`` and any other feature type.
    """
    adata = read_10x_h5_features(path)
    adata.var_names_make_unique()
    types = adata.var["feature_types"].astype(str)
    found = list(pd.unique(types))
    missing = [t for t in MODALITIES if t not in found]
    if missing:
        raise ValueError(f"{path} has no {missing} features (feature types found: {found}); "
                         "is it a Cell Ranger ARC multiome file?")
    mods = {}
    for kind in found:
        name = MODALITIES.get(kind) or re.sub(r"\W+", "_", kind.strip().lower())
        mods[name] = adata[:, (types == kind).to_numpy()].copy()
    atac = mods["atac"]
    source = atac.var.get("interval", atac.var_names)
    coords = ga.peak_coordinates(pd.DataFrame(index=atac.var_names), np.asarray(source, dtype=str))
    atac.var["chrom"] = coords["chrom"].to_numpy()
    atac.var["chromStart"] = coords["start"].to_numpy()
    atac.var["chromEnd"] = coords["end"].to_numpy()
    return md.MuData(mods)
