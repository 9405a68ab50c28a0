"""Plots of results written by ``omics_cl.tl``; each returns the matplotlib Figure."""
from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np

from omics_cl import get


def _finish(fig, save: str | None):
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=120)
    return fig


def umap(adata, use_rep: str, color: list[str] | str, seed: int = 0, save: str | None = None):
    """UMAP of ``obsm[use_rep]`` (computed once, stored as ``obsm["X_umap_<rep>"]``) coloured by obs keys.

    ``adata`` may be an AnnData or a MuData (colour keys may then live in a modality's obs).

    Parameters
    ----------
    adata
        An AnnData or a MuData with ``obsm[use_rep]``.
    use_rep
        Key in ``obsm`` of the embedding.
    color
        One obs key or a list of them; one panel each.
    seed
        Random seed of the neighbour graph and UMAP.
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import pandas as pd
    import scanpy as sc

    key = f"X_umap_{use_rep.removeprefix('X_')}"
    if key not in adata.obsm:
        tmp = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names), obsm={use_rep: np.asarray(adata.obsm[use_rep])})
        sc.pp.neighbors(tmp, use_rep=use_rep, n_neighbors=15, metric="cosine", random_state=seed)
        sc.tl.umap(tmp, random_state=seed)
        adata.obsm[key] = tmp.obsm["X_umap"]
    colors = [color] if isinstance(color, str) else list(color)
    view = ad.AnnData(obs=pd.DataFrame({c: get.obs_column(adata, c).to_numpy() for c in colors}, index=adata.obs_names),
                      obsm={key: np.asarray(adata.obsm[key])})
    fig, axes = plt.subplots(1, len(colors), figsize=(5.5 * len(colors), 4.5), squeeze=False)
    for ax, c in zip(axes[0], colors):
        sc.pl.embedding(view, basis=key, color=c, ax=ax, show=False, frameon=False)
    return _finish(fig, save)


def confusion_matrix(true, pred, normalize: bool = True, save: str | None = None):
    """Heatmap of true class (rows, largest first) against prediction (columns ordered by the best
    one-to-one match to the rows, unmatched last); rows sum to 1 when ``normalize``.

    Parameters
    ----------
    true
        True class per cell.
    pred
        Predicted class per cell.
    normalize
        Divide each row by its total.
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import pandas as pd
    from scipy.optimize import linear_sum_assignment

    table = pd.crosstab(pd.Series(np.asarray(true, dtype=object), name="true"),
                        pd.Series(np.asarray(pred, dtype=object), name="predicted"))
    table = table.loc[table.sum(1).sort_values(ascending=False, kind="stable").index]
    rows, cols = linear_sum_assignment(-table.to_numpy())
    matched = [table.columns[c] for _, c in sorted(zip(rows, cols))]
    table = table[matched + [c for c in table.columns if c not in matched]].astype(float)
    if normalize:
        table = table.div(table.sum(1), axis=0)
    fig, ax = plt.subplots(figsize=(0.45 * table.shape[1] + 3, 0.4 * table.shape[0] + 2))
    im = ax.imshow(table.to_numpy(), cmap="Blues", aspect="auto")
    ax.set_xticks(range(table.shape[1]), [str(c) for c in table.columns], rotation=90)
    ax.set_yticks(range(table.shape[0]), [str(r) for r in table.index])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax)
    return _finish(fig, save)


def training_history(adata: ad.AnnData, method: str, save: str | None = None):
    """Loss terms per epoch from ``uns["omics_cl"][method]["params"]["history"]``.

    Parameters
    ----------
    adata
        The AnnData holding the run record.
    method
        The record's name in ``uns["omics_cl"]``.
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    history = get.run_record(adata, method)["params"]["history"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in history.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return _finish(fig, save)


def novelty_distribution(adata: ad.AnnData, method: str | None = None, save: str | None = None):
    """How :func:`omics_cl.tl.transfer_labels` called cells novel (``method``; default: the recorded one):
    histograms of ``obs["omics_cl_novelty"]`` (under ``key_added``: ``<key>_novelty``) for cells predicted known
    and novel, with the threshold. Under the Otsu rule with label support (``novelty_rate=None``): each cell's
    confidence novelty against its label support, the Otsu threshold and the query's median support (novel: right
    of the one and below the other).

    Parameters
    ----------
    adata
        The ATAC query after :func:`omics_cl.tl.transfer_labels`.
    method
        The transfer whose threshold is drawn, its method name or ``key_added`` (``None``: the recorded one).
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    method = get.transfer_method(adata, method)
    column = {name: get.transfer_column(adata, name, method)
              for name in ("is_novel", "confidence_novelty", "label_support", "novelty")}
    novel = adata.obs[column["is_novel"]].to_numpy(dtype=bool)
    record = get.run_record(adata, method)
    threshold = record.get("novelty_threshold")
    labels = (f"predicted known ({(~novel).sum()})", f"predicted novel ({novel.sum()})")
    otsu_with_support = record.get("novelty_rule", "otsu") == "otsu"
    if otsu_with_support and {column["confidence_novelty"], column["label_support"]} <= set(adata.obs):
        score = adata.obs[column["confidence_novelty"]].to_numpy()
        support = adata.obs[column["label_support"]].to_numpy()
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for mask, label in ((~novel, labels[0]), (novel, labels[1])):
            ax.scatter(score[mask], support[mask], s=4, alpha=0.6, label=label)
        ax.axhline(np.median(support), color="grey", linestyle=":", label="median support")
        ax.set_xlabel("confidence novelty (1 - max softmax, cluster mean)")
        ax.set_ylabel("support for the label (gene activity)")
    else:
        novelty = adata.obs[column["novelty"]].to_numpy()
        bins = np.linspace(novelty.min(), novelty.max(), 50) if novelty.max() > novelty.min() else 10
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for mask, label in ((~novel, labels[0]), (novel, labels[1])):
            ax.hist(novelty[mask], bins=bins, alpha=0.7, label=label)
        ax.set_xlabel("novelty score")
        ax.set_ylabel("cells")
    if threshold is not None:
        rate = f", the {record['novelty_rate']:.0%} most novel" if record.get("novelty_rule") == "rate" else ""
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}{rate}")
    ax.legend()
    return _finish(fig, save)


def transfer_umap(rna: ad.AnnData, atac: ad.AnnData, label_key: str, seed: int = 0, method: str | None = None,
                  save: str | None = None):
    """UMAP of the joint label-transfer embedding (``obsm["X_<method>"]`` of both; default method: the
    recorded one), coloured by modality and by label (reference label for RNA cells, transferred label for
    ATAC cells).

    Parameters
    ----------
    rna
        The RNA reference after :func:`omics_cl.tl.transfer_labels`.
    atac
        The ATAC query after it.
    label_key
        Reference label column in ``rna.obs``.
    seed
        Random seed of the neighbour graph and UMAP.
    method
        The transfer's method name or ``key_added`` (``None``: the recorded one).
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    import pandas as pd

    method = get.transfer_method(atac, method)
    key = f"X_{method}"
    has = ~np.isnan(rna.obsm[key]).any(1)
    labels = np.concatenate([rna.obs[label_key].astype(str).to_numpy()[has],
                             atac.obs[get.transfer_column(atac, "label", method)].astype(str).to_numpy()])
    joint = ad.AnnData(obs=pd.DataFrame({
        "modality": pd.Categorical(["RNA"] * int(has.sum()) + ["ATAC"] * atac.n_obs),
        "label": pd.Categorical(labels)}, index=[f"rna:{n}" for n in rna.obs_names[has]]
        + [f"atac:{n}" for n in atac.obs_names]),
        obsm={key: np.vstack([rna.obsm[key][has], atac.obsm[key]])})
    return umap(joint, key, ["modality", "label"], seed=seed, save=save)


def memberships(adata: ad.AnnData, method: str, save: str | None = None):
    """Per cluster, the distribution of each cell's largest soft membership (``obsm["<method>_membership"]``,
    scinno / siamese with ``readout="argmax"``): low values mark cells the model could not place confidently.

    Parameters
    ----------
    adata
        AnnData clustered by ``method``.
    method
        A self-clustering method (``"scinno"`` or ``"siamese"``).
    save
        File path to save the figure to (``None``: not saved).

    Returns
    -------
    matplotlib.figure.Figure
        The figure.
    """
    if f"{method}_membership" not in adata.obsm:
        raise ValueError(f"obsm[{method + '_membership'!r}] not found: memberships are written by scinno and "
                         "siamese with readout='argmax' (their default read-off is Leiden, which has none)")
    u = np.asarray(adata.obsm[f"{method}_membership"])
    clusters = adata.obs[f"{method}_cluster"]
    names = [c for c in clusters.cat.categories if (clusters == c).any()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.5))
    ax.boxplot([u[(clusters == c).to_numpy()].max(1) for c in names], showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.axhline(1.0 / u.shape[1], color="grey", linestyle=":", label="uniform (1/K)")
    ax.set(xlabel=f"{method} cluster", ylabel="largest membership", ylim=(0, 1.02))
    ax.legend(loc="lower right")
    return _finish(fig, save)
