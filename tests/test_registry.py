import shutil

import pytest

from omics_cl import datasets

EXPECTED = {"mop_snare_paired", "zeisel_cortex", "cbmc_citeseq_rna500", "snare_cellmix", "pbmc68k_reduced"}


def test_all_five_datasets_registered_and_valid():
    found = datasets.manifests()
    assert set(found) == EXPECTED
    for name, m in found.items():
        assert m.origin_url and m.licence and m.default_label_key in m.label_keys
        for f in m.files:
            assert datasets.file_status(name, f.role)[1] == "ok", (name, f.path)


def test_load_single_and_paired():
    a = datasets.load("pbmc68k_reduced")
    assert a.shape == (700, 765) and "bulk_labels" in a.obs
    mdata = datasets.load("mop_snare_paired")
    assert set(mdata.mod) == {"rna", "atac"} and mdata["atac"].n_vars == 25734


def test_corrupt_file_is_refused_naming_dataset_file_and_variable(tmp_path, monkeypatch):
    src = datasets.path("pbmc68k_reduced", "rna")
    dst = tmp_path / "pbmc68k_reduced" / src.name
    dst.parent.mkdir()
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"corrupt!")
    monkeypatch.setenv(datasets.DATA_DIR_VAR, str(tmp_path))
    with pytest.raises(ValueError, match="pbmc68k_reduced.*sha256.*OMICS_CL_DATA_DIR"):
        datasets.load("pbmc68k_reduced")


def test_missing_file_names_dataset_file_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.DATA_DIR_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"zeisel_cortex.*zeisel_counts.h5ad.*\$OMICS_CL_DATA_DIR"):
        datasets.load("zeisel_cortex")


def test_unknown_dataset():
    with pytest.raises(KeyError, match="unknown dataset"):
        datasets.load("nope")
