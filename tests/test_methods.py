"""The method contract: a sixth method is one object plus one registry call, and parameters reach it from
Python and the CLI (validated, ambiguous names refused)."""
from dataclasses import dataclass

import anndata as ad
import jax
import numpy as np
import pytest
from flax import nnx

from omics_cl import cli, models, tl
from omics_cl.core import losses
from omics_cl.core.train import Stage, TrainConfig, predict
from omics_cl.data.sources import KEYS


@dataclass(frozen=True)
class ToyConfig:
    latent: int = 4
    temperature: float = 0.5


class Toy(nnx.Module):
    def __init__(self, n_features, config, *, rngs):
        self.encoder = nnx.Linear(n_features, config.latent, rngs=rngs)


def toy_loss(config):
    def loss_fn(model, batch, key, train):
        z = model.encoder(batch[KEYS.X])
        noisy = model.encoder(batch[KEYS.X] + 0.1 * jax.random.normal(key, batch[KEYS.X].shape))
        loss = losses.nt_xent(z, noisy, config.temperature)
        return loss, {"contrastive": loss}
    return loss_fn


TOY = models.Method(
    name="toy", job="cluster", config=ToyConfig(), train=TrainConfig(epochs=2, batch_size=64),
    source=lambda prepared, config, ctx: prepared.source(),
    init=lambda source, config, ctx: Toy(source.n_features, config, rngs=nnx.Rngs(ctx.seed)),
    stages=lambda config, train, source, ctx: [Stage("train", train.epochs, toy_loss(config))],
    embed=lambda model, source, config, train, ctx: (
        {"embedding": predict(lambda m, b: m.encoder(b[KEYS.X]), model, source)}, {}),
    summary="a toy linear contrastive encoder")


@pytest.fixture
def toy():
    models.register(TOY)
    yield TOY
    models.unregister("toy")


def test_a_registered_method_runs_through_tl(counts_adata, toy):
    rec = tl.cluster(counts_adata, method="toy", n_clusters=3, progress=False, temperature=0.2)
    assert counts_adata.obsm["X_toy"].shape == (300, 4)
    assert counts_adata.obs["toy_cluster"].nunique() == 3
    assert rec["params"]["temperature"] == 0.2 and rec["params"]["epochs"] == 2
    assert len(rec["params"]["history"]["contrastive"]) == 2


def test_a_registered_method_runs_through_the_cli(counts_adata, toy, tmp_path, capsys):
    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    counts_adata.write_h5ad(src)
    assert cli.main(["cluster", str(src), "--method", "toy", "--set", "latent=3", "--set", "batch_size=32",
                     "--out", str(out), "--no-progress"]) == 0
    result = ad.read_h5ad(out)
    assert result.obsm["X_toy"].shape == (300, 3)
    assert result.uns["omics_cl"]["toy"]["params"]["batch_size"] == 32


def test_unknown_method_lists_the_registered_ones(counts_adata):
    with pytest.raises(ValueError, match="choose one of .*'cae'"):
        tl.cluster(counts_adata, method="toy", progress=False)
    with pytest.raises(ValueError, match="unknown integrate method 'cae'"):
        models.get("cae", "integrate")


def test_every_builtin_method_describes_itself():
    assert set(models.names("cluster")) == {"pca", "pca_unscaled", "pca_pearson", "ae", "cae", "scinno", "siamese"}
    assert models.names("integrate") == ["sci2cl"] and models.names("transfer") == ["scncl"]
    for method in models.METHODS.values():
        assert method.summary and (method.train is None) == (method.name in ("pca", "pca_unscaled", "pca_pearson"))
    assert {m.name for m in models.METHODS.values() if m.self_clustering} == {"scinno", "siamese"}


def test_configure_routes_validates_and_refuses_ambiguous_names():
    config, train = models.configure(models.METHODS["cae"], temperature=0.1, epochs=7, hidden=[64, 32])
    assert config.temperature == 0.1 and train.epochs == 7 and config.hidden == (64, 32)
    with pytest.raises(TypeError, match="unknown parameter 'temprature'"):
        models.configure(models.METHODS["cae"], temprature=0.1)
    with pytest.raises(TypeError, match="epochs must be int"):
        models.configure(models.METHODS["cae"], epochs="many")
    with pytest.raises(TypeError, match="not trained"):
        models.configure(models.METHODS["pca"], train={"epochs": 3})
    clash = models.Method(name="clash", job="cluster", config=TrainConfig(), train=TrainConfig(),
                          source=None, embed=None)
    with pytest.raises(TypeError, match="both"):
        models.configure(clash, epochs=3)
    config, train = models.configure(clash, config={"epochs": 3}, train={"epochs": 5})
    assert (config.epochs, train.epochs) == (3, 5)
    with pytest.raises(ValueError, match=r"saved_defaults of typo name fields its config lacks: \['epoch'\]"):
        models.Method(name="typo", job="cluster", config=TrainConfig(), train=None, source=None, embed=None,
                      saved_defaults={"epoch": 3})


def test_sci2cl_temperatures_are_two_parameters():
    config, _ = models.configure(models.METHODS["sci2cl"], clip_temperature=0.2, negative_temperature=0.05)
    assert (config.clip_temperature, config.negative_temperature) == (0.2, 0.05)
    with pytest.raises(TypeError, match="unknown parameter 'temperature'"):
        models.configure(models.METHODS["sci2cl"], temperature=0.1)


def test_cli_set_is_checked_before_reading_data(tmp_path, capsys):
    missing = tmp_path / "nope.h5ad"
    code = cli.main(["cluster", str(missing), "--method", "cae", "--set", "temprature=0.1", "--out",
                     str(tmp_path / "o.h5ad")])
    assert code == 2 and "temprature" in capsys.readouterr().err
    code = cli.main(["cluster", str(missing), "--set", "novalue", "--out", str(tmp_path / "o.h5ad")])
    assert code == 2 and "KEY=VALUE" in capsys.readouterr().err


def test_pca_takes_no_training_but_its_own_config(counts_adata):
    rec = tl.cluster(counts_adata, method="pca", n_comps=20, graph_comps=10, progress=False)
    assert counts_adata.obsm["X_pca"].shape == (300, 20) and rec["graph_dims"] == 10
    np.testing.assert_array_equal(counts_adata.obsm["X_pca"].shape, (300, 20))


def test_pca_standardises_genes_and_pca_unscaled_keeps_the_old_baseline(counts_adata):
    import scanpy as sc

    from omics_cl.data.components import principal_components
    from omics_cl.data.preprocess import prepare_counts

    a, b = counts_adata.copy(), counts_adata.copy()
    tl.cluster(a, method="pca", n_comps=20, progress=False)
    tl.cluster(b, method="pca_unscaled", n_comps=20, progress=False)
    x = prepare_counts(counts_adata, None, 2000).source().lognorm_sparse()
    np.testing.assert_array_equal(a.obsm["X_pca"], principal_components(x, 20, 0, standardize=True))
    unscaled = sc.pp.pca(x.astype(np.float32), n_comps=20, random_state=0, svd_solver="arpack")
    np.testing.assert_array_equal(b.obsm["X_pca_unscaled"], np.asarray(unscaled, np.float32))
    assert not np.allclose(np.abs(a.obsm["X_pca"]), np.abs(b.obsm["X_pca_unscaled"]), atol=1e-3)
