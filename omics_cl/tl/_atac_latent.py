"""The learned ATAC latent of label transfer (``transfer_labels(..., learned_atac=True)``): a peak-gene guided VAE
(``omics_cl.core.guided_vae``) trained on the reference's RNA counts and the query's peak counts, no labels; and
the same latent of a new query from a saved model (``map_query``): its peaks projected into the training query's
LSI, then through the saved ATAC encoder."""
from __future__ import annotations

import dataclasses
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict
from sklearn.decomposition import PCA

from omics_cl.checks import check_positive_int
from omics_cl.core import saved_model
from omics_cl.core.guided_vae import GuidedVAE, GuidedVAEConfig, VariationalEncoder, encode_means, make_loss
from omics_cl.core.train import TrainConfig, fit
from omics_cl.data import gene_activity as ga
from omics_cl.data import lsi
from omics_cl.data.guidance import UnpairedSource, guidance_graph


def scaled_log_pca(counts, n_components: int, seed: int) -> np.ndarray:
    """PCA of log-normalised counts (10^4 per cell), each gene standardised and clipped to +-10."""
    counts = sp.csr_matrix(counts, dtype=np.float32)
    totals = np.asarray(counts.sum(1)).ravel()
    scaled = sp.diags(np.divide(1e4, totals, out=np.zeros_like(totals), where=totals > 0)) @ counts
    x = np.log1p(scaled.toarray())
    x = np.clip((x - x.mean(0)) / np.maximum(x.std(0), 1e-6), -10, 10)
    n_components = min(n_components, min(x.shape) - 1)
    return PCA(n_components, random_state=seed).fit_transform(x).astype(np.float32)


def guided_config(learned_atac) -> GuidedVAEConfig | None:
    """``transfer_labels``' ``learned_atac`` as a config: ``False`` -> None, ``True`` -> the defaults, a dict ->
    the defaults with its values. ``ValueError`` for anything else, an unknown key or a count below 1."""
    if isinstance(learned_atac, bool):
        return GuidedVAEConfig() if learned_atac else None
    if not isinstance(learned_atac, dict):
        raise ValueError(f"learned_atac must be True, False or a dict of GuidedVAEConfig values, "
                         f"got {learned_atac!r}")
    known = {f.name for f in dataclasses.fields(GuidedVAEConfig)}
    unknown = sorted(set(learned_atac) - known)
    if unknown:
        raise ValueError(f"learned_atac has unknown keys {unknown}; known: {sorted(known)}")
    config = dataclasses.replace(GuidedVAEConfig(), **learned_atac)
    for name in ("n_latent", "hidden", "n_pcs", "n_lsi", "edge_batch", "negatives", "epochs", "batch_size"):
        check_positive_int(getattr(config, name), f"learned_atac[{name!r}]")
    return config


def learned_atac_latent(rna_counts, genes, atac: ad.AnnData, peak_counts, annotation, seed: int = 0,
                        progress: bool = True, config: GuidedVAEConfig = GuidedVAEConfig(),
                        tfidf_scale: float | None = None) -> tuple[np.ndarray, dict, dict[str, np.ndarray]]:
    """The query's guided-VAE latent (means, each column standardised), the run's record and the arrays that
    :func:`saved_query_latent` needs to embed another query (the LSI projection, the ATAC encoder, the peaks).

    ``rna_counts``: reference cells x ``genes`` raw counts; ``peak_counts``: ``atac``'s raw counts (its peaks'
    coordinates come from ``atac.var`` or the peak names); ``annotation``: the gene annotation linking genes to
    peaks (gene body + 2 kb before the TSS); ``tfidf_scale``: that of the peaks' LSI
    (:func:`omics_cl.data.lsi.tfidf`)."""
    graph = guidance_graph(ga.peak_coordinates(atac.var, atac.var_names), annotation, genes)
    rna_x = scaled_log_pca(rna_counts, config.n_pcs, seed)
    atac_x, _, projection = lsi.fit_lsi(peak_counts, config.n_lsi, seed=seed, tfidf_scale=tfidf_scale)
    source = UnpairedSource(rna_x, rna_counts, atac_x, peak_counts, graph, config.peak_subset, config.edge_batch,
                            config.negatives)
    model = GuidedVAE(rna_x.shape[1], atac_x.shape[1], graph, config, rngs=nnx.Rngs(seed))
    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                        progress=progress)
    result = fit(model, make_loss(graph, config), source, train, seed, desc="ATAC latent")
    record = {"config": dataclasses.asdict(config), "n_graph_edges": int(len(graph.src) - graph.n_vertices) // 2,
              "final": {k: float(v[-1]) for k, v in result.history.items()},
              "seconds": float(np.sum(result.epoch_seconds))}
    encoder_state = flatten_dict(nnx.to_pure_dict(nnx.state(result.model.atac_encoder)))
    saved = {**{f"{LSI_PREFIX}{k}": v for k, v in projection.items()},
             **{encoder_key(path): np.asarray(v) for path, v in encoder_state.items()},
             PEAKS: np.asarray(atac.var_names, dtype=str)}
    return standardised(encode_means(result.model.atac_encoder, atac_x)), record, saved


LSI_PREFIX, ENCODER_PREFIX, PEAKS = "atac_lsi_", "atac_encoder/", "atac_peaks"  # keys of the saved arrays


def encoder_key(path: tuple) -> str:
    """The saved array name of one ATAC encoder parameter (its path in the encoder's state)."""
    return ENCODER_PREFIX + "/".join(map(str, path))


def standardised(latent: np.ndarray) -> np.ndarray:
    """Each column at mean 0, standard deviation 1 (a constant column at 0), float32."""
    latent = (latent - latent.mean(0)) / np.where(latent.std(0) > 0, latent.std(0), 1.0)
    return latent.astype(np.float32)


def saved_query_latent(peak_counts, peak_names, arrays: dict[str, np.ndarray], config: dict) -> np.ndarray:
    """A new query's latent from a model saved with the learned ATAC latent: its peaks matched to the training
    query's by name (missing peaks are zero, with a warning; none shared is a ``ValueError``), projected into the
    training query's LSI, encoded and standardised over this query. The training query gives the training latent."""
    saved_peaks = arrays[PEAKS]
    position = {name: i for i, name in enumerate(np.asarray(peak_names, dtype=str))}
    columns = np.array([position.get(name, -1) for name in saved_peaks])
    present = columns >= 0
    if not present.any():
        raise ValueError(f"the query shares no peak with the model's training query (e.g. {list(saved_peaks[:3])}); "
                         "its learned ATAC latent needs the same peak set")
    if not present.all():
        warnings.warn(f"{int((~present).sum())} of the model's {len(saved_peaks)} peaks are not in the query "
                      f"(e.g. {list(saved_peaks[~present][:3])}); they are set to zero in its learned ATAC latent",
                      stacklevel=4)
    counts = sp.csr_matrix(peak_counts)
    ones = np.ones(int(present.sum()), dtype=counts.dtype)
    select = sp.csr_matrix((ones, (columns[present], np.flatnonzero(present))),
                           shape=(counts.shape[1], len(saved_peaks)))  # query peak -> saved peak
    counts = sp.csr_matrix(counts @ select)
    projection = {k: arrays[f"{LSI_PREFIX}{k}"] for k in ("idf", "components", "mean", "std")}
    # models saved before 2026-12-06 kept no scale: theirs was Signac's
    projection["scale"] = arrays.get(f"{LSI_PREFIX}scale", lsi.SIGNAC_SCALE)
    x = lsi.project_lsi(counts, projection)
    c = GuidedVAEConfig(**config)
    encoder = VariationalEncoder(x.shape[1], c.hidden, c.n_latent, c.dropout_rate, rngs=nnx.Rngs(0))
    paths = flatten_dict(nnx.to_pure_dict(nnx.state(encoder)))
    saved_model.restore(encoder, unflatten_dict({path: arrays[encoder_key(path)] for path in paths}))
    return standardised(encode_means(encoder, x))
