"""Every benchmark script reads ``--seeds N --first-seed F`` the same way: seeds F..F+N-1."""
import argparse

import pytest
from conftest import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def common():
    return load_benchmark("common")


@pytest.mark.parametrize("argv, seeds", [([], [0, 1, 2, 3, 4]), (["--seeds", "2"], [0, 1]),
                                         (["--first-seed", "3", "--seeds", "2"], [3, 4]),
                                         (["--first-seed", "1", "--seeds", "1"], [1])])
def test_seed_range_counts_from_first_seed(common, argv, seeds):
    parser = argparse.ArgumentParser()
    common.add_seed_arguments(parser)
    assert list(common.seed_range(parser.parse_args(argv))) == seeds


SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "common.py")


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_script_defines_its_own_first_seed(script):
    text = (BENCHMARKS / script).read_text()
    assert 'add_argument("--first-seed"' not in text and "args.first_seed" not in text
    if "add_seed_arguments(p" in text:
        assert "seed_range(args)" in text


def test_the_seeded_benchmarks_use_the_shared_arguments():
    shared = {name for name in SCRIPTS if "add_seed_arguments(p" in (BENCHMARKS / name).read_text()}
    assert {"atac_embedding.py", "clustering.py", "integration.py", "label_transfer.py"} <= shared


def test_scglue_stage_dirs_keep_capped_full_and_seeds_apart(common, tmp_path):
    """A capped and a full scGLUE run, or two seeds, never resume from each other's finished stages."""
    dirs = {common.scglue_stage_dir(str(tmp_path), f"closed_seed{seed}", cap) for seed in (0, 1) for cap in (None, 10)}
    assert len(dirs) == 4 and all(d.startswith(str(tmp_path)) for d in dirs)
    assert common.scglue_stage_dir(None, "closed_seed0", None) is None
    assert common.scglue_stage_dir(str(tmp_path), "seed0", 10).endswith("seed0_max10")


def test_integration_keeps_anchor_embeddings_apart_by_cap_and_model():
    """A kept scGLUE embedding names its cap and model, so a run never reads a capped or another model's embedding;
    the other methods keep the names label_consistency.py reads."""
    anchors = load_benchmark("integration_anchors")
    args = argparse.Namespace(design="full", scglue_max_epochs=None, multivi_max_epochs=None)
    capped = argparse.Namespace(design="full", scglue_max_epochs=10, multivi_max_epochs=10)
    names = {anchors.embedding_name(m, 0, a) for m in ("scglue", "multivi") for a in (args, capped)}
    assert len(names) == 4 and "full_scglue_paired_0" in names and "full_scglue_paired_max10_0" in names
    assert anchors.embedding_name("sci2cl", 0, capped) == "full_sci2cl_0"
    assert anchors.anchor_run_tags("scglue", capped) == {"max_epochs": 10, "scglue_model": "PairedSCGLUEModel"}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_imports(script):
    """A script whose imports no longer resolve fails here, not on the next benchmark run (predict_calls.py
    imported a function removed from omics_cl.models.cae, transfer_ceiling.py one moved to omics_cl.data.counts)."""
    load_benchmark(script.removesuffix(".py"))
