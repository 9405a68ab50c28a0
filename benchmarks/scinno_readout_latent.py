"""scinno's Leiden read-off on the encoder's latent against the attention-refined latent, from one trained model per
(dataset, seed): rows ``scinno_encoder`` (``readout_latent="encoder"``, the default since 2026-12-03) and
``scinno_refined`` (the default before). Each latent is fused with the two PCA views as the default config fuses them
(``models.common.fused_readout``, once per latent on views computed once: ``pca_residuals="both"``; cae's fixed
weights since 2026-12-05, equal weights when the rows in ``benchmarks/clustering.md`` were recorded) and clustered by
consensus Leiden (n_clusters protocol), as ``tl.cluster`` does. ``--contexts N`` also scores the refined latent under
N-1 further inference contexts (the fixed cells each cell attends to) and their mean (rows ``scinno_refined_ctx<c>``,
``scinno_refined_mean<N>``). Labels are used only for scoring and K.

    python benchmarks/scinno_readout_latent.py --datasets pbmc68k_reduced,mop_snare_paired --seeds 5 --json out.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering import DEFAULT_DATASETS
from common import clustering_row, labelled_rna, machine, n_clusters_leiden, print_clustering_summary, write_json_atomic

from omics_cl import models
from omics_cl.data.preprocess import prepare_counts
from omics_cl.models import scinno
from omics_cl.models.common import fused_readout, pca_views


def latents(prepared, seed: int, k: int, contexts: int) -> tuple[dict[str, np.ndarray], object, float]:
    """The encoder's and the refined latents of one trained scinno model, its source and the training seconds."""
    start = time.perf_counter()
    spec = models.get("scinno", "cluster")
    ctx = models.Context(seed, k)
    run = models.train_method(spec, prepared, ctx, progress=False)
    seconds = time.perf_counter() - start
    source = spec.source(prepared, run.config, ctx)
    out = {"scinno_encoder": scinno.latent(run.model, source)}
    refined = [scinno.refined(run.model, source, run.train, models.Context(seed + 1000 * c, k))
               for c in range(contexts)]
    out["scinno_refined"] = refined[0]
    if contexts > 1:
        out.update({f"scinno_refined_ctx{c}": z for c, z in enumerate(refined) if c})
        out[f"scinno_refined_mean{contexts}"] = np.mean(refined, 0)
    return out, source, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=DEFAULT_DATASETS, help="comma-separated registry names")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--contexts", type=int, default=1, help="inference contexts of the refined latent")
    p.add_argument("--json", required=True, help="output JSON list of rows")
    args = p.parse_args(argv)
    rows = []
    config = models.get("scinno", "cluster").config
    print(f"machine: {machine()}", flush=True)
    for name in args.datasets.split(","):
        manifest, adata, truth, k = labelled_rna(name)
        prepared = prepare_counts(adata)
        for seed in (int(s) for s in args.seeds.split(",")):
            out, source, seconds = latents(prepared, seed, k, args.contexts)
            pcs = pca_views(source.x, source.hvg_normalizer, config.pca_comps, config.pca_residuals, seed)
            for method, z in out.items():
                fused = fused_readout(pcs, z, config, seed)[0]["embedding"]
                labels = n_clusters_leiden(fused, seed, k)
                rows.append(clustering_row(manifest, truth, labels, seconds, dataset=name, method=method,
                                           protocol="n_clusters", seed=seed))
            write_json_atomic(rows, args.json)
    print_clustering_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
