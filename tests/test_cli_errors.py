"""Every ``omics-cl`` error is one line on stderr with exit status 2 and leaves no output behind: a corrupt
input, an input that may not be read, an output directory that may not be written, and a write that fails
(disk full, permission denied). Training is stubbed for transfer, integrate and map (the errors concern the
files around it); cluster runs pca for real and the demo runs cae for one epoch."""
import errno
import os
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import mudata as md
import pytest

from omics_cl import demos, pp, tl
from omics_cl.cli import main
from omics_cl.core import saved_model

COMMANDS = ("cluster", "transfer", "integrate", "map-transfer", "map-integrate", "demo")
WITH_INPUTS = COMMANDS[:-1]


@pytest.fixture
def inputs(tmp_path, counts_adata):
    """Input files in ``in/`` and an empty output directory ``out/``."""
    src = tmp_path / "in"
    src.mkdir()
    (tmp_path / "out").mkdir()
    for name in ("counts", "rna", "atac", "ga"):
        counts_adata.write_h5ad(src / f"{name}.h5ad")
    for job in ("transfer", "integrate"):
        (src / f"{job}_model").mkdir()
    return tmp_path


@pytest.fixture
def calls(monkeypatch):
    """Stub the trained steps (recording their names) and run the real pca clustering; cae only in the demo."""
    seen = []

    def labels(name):
        def stub(*args, **kwargs):
            seen.append(name)
            atac = args[0] if name == "map_query" else args[1]
            atac.obs["omics_cl_is_novel"] = False
            record = {"method": "scncl", "classes": ["0", "1", "2"], "n_unlabelled_reference_cells": 0,
                      "novelty_threshold": 0.5, "novelty_rule": "rate", "n_missing_genes": 0,
                      "novelty_threshold_from": "query"}
            atac.uns["omics_cl"] = {"scncl": record, "transfer_method": "scncl"}  # as the tools record it
            return record
        return stub

    def paired(name):
        def stub(*args, **kwargs):
            seen.append(name)
            return {"method": "sci2cl", "n_genes": 120, "n_peaks": 120, "n_missing_genes": 0, "n_missing_peaks": 0,
                    "n_clusters": 3, "resolution": 1.0}
        return stub

    real_cluster = tl.cluster

    def cluster(*args, **kwargs):
        seen.append("cluster")
        return real_cluster(*args, **kwargs)

    monkeypatch.setattr(tl, "cluster", cluster)
    monkeypatch.setattr(tl, "transfer_labels", labels("transfer_labels"))
    monkeypatch.setattr(tl, "map_query", labels("map_query"))
    monkeypatch.setattr(tl, "integrate", paired("integrate"))
    monkeypatch.setattr(tl, "map_paired", paired("map_paired"))
    monkeypatch.setattr(tl, "load_transfer_model", lambda path: None)
    monkeypatch.setattr(tl, "load_integration_model", lambda path: None)
    monkeypatch.setattr(saved_model, "read_model", lambda path: SimpleNamespace(meta={"job": Path(path).name[:-6]}))
    monkeypatch.setattr(demos, "CLUSTER_METHODS", ("cae",))
    return seen


def command(name: str, base: Path) -> tuple[list[str], Path, list[Path]]:
    """``(argv, output file, input files)`` of one subcommand on the files of ``inputs``."""
    src, out = base / "in", base / "out"
    if name == "demo":
        return ["demo", "--epochs", "1", "--out", str(out / "demo"), "--no-progress"], \
            out / "demo" / "pbmc68k_reduced.h5ad", []
    rna, atac, ga = src / "rna.h5ad", src / "atac.h5ad", src / "ga.h5ad"
    argv = {
        "cluster": ["cluster", str(src / "counts.h5ad"), "--method", "pca", "--out", str(out / "o.h5ad")],
        "transfer": ["transfer", "--rna", str(rna), "--atac", str(atac), "--gene-activity", str(ga),
                     "--label-key", "group", "--out", str(out / "o.h5ad"), "--no-progress"],
        "integrate": ["integrate", "--rna", str(rna), "--atac", str(atac), "--out", str(out / "o.h5mu"),
                      "--no-progress"],
        "map-transfer": ["map", "--model", str(src / "transfer_model"), "--atac", str(atac), "--gene-activity",
                         str(ga), "--out", str(out / "o.h5ad")],
        "map-integrate": ["map", "--model", str(src / "integrate_model"), "--rna", str(rna), "--atac", str(atac),
                          "--out", str(out / "o.h5mu")],
    }[name]
    files = [src / "counts.h5ad"] if name == "cluster" else [rna, atac] + ([ga] if "transfer" in name else [])
    return argv, Path(argv[argv.index("--out") + 1]), files


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expecting exit status 2 and one line on stderr; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"omics-cl {argv[0]}: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def deny(monkeypatch):
    """``deny(path, os.R_OK or os.W_OK)``: chmod ``path`` unreadable or unwritable; root ignores file modes,
    so there ``os.access`` is patched to refuse it instead (the CLI's early check reads ``os.access``)."""
    changed = []

    def deny_access(path: Path, mode: int) -> None:
        if os.geteuid() != 0:
            changed.append((path, path.stat().st_mode))
            path.chmod(0o000 if mode == os.R_OK else 0o555)
            return
        real = os.access

        def access(p, m, *args, **kwargs):
            return not (m & mode and Path(p).resolve() == path.resolve()) and real(p, m, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)

    yield deny_access
    for path, mode in changed:
        path.chmod(mode)


@pytest.mark.parametrize("name", COMMANDS)
@pytest.mark.parametrize("failure,reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    (OSError("Can't write data (file write failed: errno = 28)"), "Can't write data"),  # h5py's form
])
def test_failed_write_is_one_line_and_leaves_no_file(inputs, calls, capsys, monkeypatch, name, failure, reason):
    def write(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x89HDF half")  # the writer got part of the way
        raise failure

    monkeypatch.setattr(ad.AnnData, "write", write)
    monkeypatch.setattr(md.MuData, "write", write)
    argv, out, _ = command(name, inputs)
    err = one_line_error(capsys, argv)
    assert f"cannot write {out}: {reason}" in err
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if not p.name.endswith(".png")] == []  # no temporary, no scores.md
    assert calls  # failed at the write, after the work


@pytest.mark.parametrize("name", COMMANDS)
def test_unwritable_output_directory_fails_before_any_work(inputs, calls, capsys, deny, name):
    argv = command(name, inputs)[0]
    deny(inputs / "out", os.W_OK)
    err = one_line_error(capsys, argv)
    assert f"cannot write to output directory {inputs / 'out'}: permission denied" in err
    assert calls == [] and list((inputs / "out").iterdir()) == []


@pytest.mark.parametrize("name", WITH_INPUTS)
def test_unreadable_input_fails_before_any_work(inputs, calls, capsys, deny, name):
    argv, _, files = command(name, inputs)
    deny(files[-1], os.R_OK)
    err = one_line_error(capsys, argv)
    assert f"cannot read input file {files[-1]}: permission denied" in err
    assert calls == [] and list((inputs / "out").iterdir()) == []


@pytest.mark.parametrize("name", WITH_INPUTS)
def test_corrupt_input_is_one_line(inputs, calls, capsys, name):
    argv, _, files = command(name, inputs)
    data = files[-1].read_bytes()
    files[-1].write_bytes(data[: len(data) // 2])
    err = one_line_error(capsys, argv)
    assert f"cannot read {files[-1]} as .h5ad" in err and "is the file complete?" in err
    assert calls == [] and list((inputs / "out").iterdir()) == []


def test_permission_denied_after_the_checks_is_one_line(inputs, calls, capsys, monkeypatch):
    """A report directory that cannot be made (the OSError carries its file name)."""
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    argv, out, _ = command("transfer", inputs)
    err = one_line_error(capsys, [*argv, "--report", str(inputs / "out" / "report")])
    assert f"Permission denied: {inputs / 'out' / 'report'}" in err and not out.exists()


@pytest.mark.parametrize("name", ["transfer", "map-transfer"])
def test_novelty_rate_reaches_the_tool(inputs, calls, capsys, monkeypatch, name):
    """``--novelty-rate`` outside [0, 1) is a usage error; ``otsu`` asks for the Otsu rule (``novelty_rate=None``), a
    share is passed on, and without the option the tool's default applies."""
    argv, out, _ = command(name, inputs)
    with pytest.raises(SystemExit) as usage:
        main([*argv, "--novelty-rate", "1.5"])
    assert usage.value.code == 2 and "--novelty-rate" in capsys.readouterr().err and not out.exists()
    tool = "transfer_labels" if name == "transfer" else "map_query"
    stub, given = getattr(tl, tool), []

    def recording(*args, **kwargs):
        given.append(kwargs.get("novelty_rate", "default"))
        return stub(*args, **kwargs)

    monkeypatch.setattr(tl, tool, recording)
    for i, extra in enumerate((["--novelty-rate", "otsu"], ["--novelty-rate", "0.05"], [])):
        run = [*argv, *extra]
        run[run.index("--out") + 1] = str(out.with_name(f"run{i}{out.suffix}"))
        assert main(run) == 0, capsys.readouterr().err
    assert given == [None, 0.05, "default"]


def test_learned_atac_needs_the_annotation_and_reaches_the_tool(inputs, calls, capsys, monkeypatch):
    argv, out, _ = command("transfer", inputs)
    err = one_line_error(capsys, [*argv, "--learned-atac"])
    assert "give --annotation instead of --gene-activity" in err and not out.exists()
    stub, given = tl.transfer_labels, []

    def recording(*args, **kwargs):
        given.append((kwargs["learned_atac"], kwargs["annotation"]))
        return stub(*args, **kwargs)

    monkeypatch.setattr(tl, "transfer_labels", recording)
    monkeypatch.setattr(pp, "gene_activity", lambda atac, annotation, layer=None: atac)
    genes = argv[argv.index("--gene-activity") + 1]
    argv[argv.index("--gene-activity")] = "--annotation"
    assert main([*argv, "--learned-atac"]) == 0, capsys.readouterr().err
    assert given == [(True, genes)]


def test_tfidf_scale_is_checked_and_reaches_the_tool(inputs, calls, capsys, monkeypatch):
    """``--tfidf-scale`` must be a positive number (a usage error otherwise); it is passed on, and without it the
    tool's default (adaptive, None) applies; ``--scale-lsi`` passes ``scale_lsi=True`` (default False)."""
    argv, out, _ = command("transfer", inputs)
    for bad in ("0", "-2", "nan", "inf", "ten"):
        with pytest.raises(SystemExit) as usage:
            main([*argv, "--tfidf-scale", bad])
        assert usage.value.code == 2 and "--tfidf-scale" in capsys.readouterr().err and not out.exists()
    stub, given = tl.transfer_labels, []

    def recording(*args, **kwargs):
        given.append((kwargs["tfidf_scale"], kwargs["scale_lsi"]))
        return stub(*args, **kwargs)

    monkeypatch.setattr(tl, "transfer_labels", recording)
    for i, extra in enumerate((["--tfidf-scale", "1e4"], ["--scale-lsi"], [])):
        run = [*argv, *extra]
        run[run.index("--out") + 1] = str(out.with_name(f"scale{i}{out.suffix}"))
        assert main(run) == 0, capsys.readouterr().err
    assert given == [(1e4, False), (None, True), (None, False)]
