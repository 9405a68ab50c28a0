"""The label-transfer benchmark's baselines: logistic regression on the shared gene features, a kNN vote in their
joint PCA, and scGLUE's kNN vote (run in the anchors environment)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from omics_cl.data.transfer import transfer_features

ANCHORS = Path(__file__).resolve().parent / "anchors"


def run_logreg(ref, query, activity, seed):
    from sklearn.linear_model import LogisticRegression

    rna_x, atac_x, _, _ = transfer_features(ref, activity)
    clf = LogisticRegression(max_iter=1000, random_state=seed).fit(rna_x, ref.obs["cell_type"].astype(str))
    prob = clf.predict_proba(atac_x)
    return clf.classes_[prob.argmax(1)], prob.max(1)


def knn_vote(ref_z, query_z, labels, k=30):
    """Majority label among the ``k`` cosine-nearest reference cells; confidence = its vote fraction."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(ref_z).kneighbors(query_z)
    votes_of = labels[idx]
    classes = np.unique(labels)
    votes = np.stack([(votes_of == c).mean(1) for c in classes], axis=1)
    return classes[votes.argmax(1)], votes.max(1)


def run_knn_pca(ref, query, activity, seed):
    import scanpy as sc
    import scipy.sparse as sp

    rna_x, atac_x, _, _ = transfer_features(ref, activity, mode="lognorm")
    joint = sc.pp.pca(sp.vstack([rna_x, atac_x]).tocsr(), n_comps=30, random_state=seed, svd_solver="arpack")
    return knn_vote(joint[: rna_x.shape[0]], joint[rna_x.shape[0]:], ref.obs["cell_type"].astype(str).to_numpy())


def scglue_embeddings(ref, query, annotation, seed, python, max_epochs=None, workdir=None):
    """scGLUE's joint embedding ``(reference rows, query rows)``; ``workdir`` keeps its finished training stages for
    a later run to resume (or to read back without training)."""
    with tempfile.TemporaryDirectory() as tmp:
        ref.write_h5ad(f"{tmp}/rna.h5ad")
        query.write_h5ad(f"{tmp}/atac.h5ad")
        subprocess.run([python, str(ANCHORS / "scglue_embed.py"), f"{tmp}/rna.h5ad", f"{tmp}/atac.h5ad",
                        str(annotation), f"{tmp}/out.npz", "--seed", str(seed),
                        *(["--max-epochs", str(max_epochs)] if max_epochs else []),
                        *(["--workdir", str(workdir)] if workdir else [])], check=True,
                       stdout=subprocess.DEVNULL)
        z = np.load(f"{tmp}/out.npz")
        return z["rna"], z["atac"]


def run_scglue(ref, query, annotation, seed, python, max_epochs, workdir=None):
    """scGLUE's kNN(30) vote in its joint embedding (:func:`scglue_embeddings`)."""
    rna_z, atac_z = scglue_embeddings(ref, query, annotation, seed, python, max_epochs, workdir)
    return knn_vote(rna_z, atac_z, ref.obs["cell_type"].astype(str).to_numpy())
