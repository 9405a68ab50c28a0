"""Gene activity: ATAC peak counts summed over each gene's body extended upstream of its TSS.

Annotations are read from GTF, GFF3, BED or the gzipped TSV tables of ``shared/annotations``
(``chrom start end gene_name gene_id strand gene_type [alt_name]``, 0-based half-open) into one
table with 0-based half-open coordinates. Peak coordinates come from ``var`` columns or are
parsed from names (``chr1:100-200``, ``chr1-100-200``, ``chr1_100_200``). Chromosome names are
compared without a ``chr`` prefix, so ``chr1`` matches ``1`` and ``chrM`` matches ``MT``.
The result is one sparse peak x gene overlap matrix and a sparse product.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

PEAK_NAME = re.compile(r"^(?P<chrom>.+?)[:_\-](?P<start>\d+)[_\-](?P<end>\d+)$")
PEAK_VAR_COLUMNS = [("chrom", "chromStart", "chromEnd"), ("chrom", "start", "end"), ("chr", "start", "end"),
                    ("seqnames", "start", "end")]
GTF_COLUMNS = ["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attributes"]


def chrom_key(names) -> np.ndarray:
    """Chromosome names compared without a ``chr`` prefix; mitochondrial ``M``/``MT`` unified."""
    s = pd.Series(np.asarray(names, dtype=str)).str.replace(r"^chr", "", regex=True, case=False)
    return np.asarray(s.replace({"M": "MT"}))


def _first_attribute(attributes: pd.Series, keys: list[str], gff3: bool) -> pd.Series:
    out = None
    for key in keys:
        pattern = rf"(?:^|;)\s*{key}=([^;]+)" if gff3 else rf'(?:^|;)\s*{key} "([^"]+)"'
        found = attributes.str.extract(pattern, expand=False)
        out = found if out is None else out.where(out.notna(), found)
    return out


def _read_gtf(path: Path, gff3: bool) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", comment="#", header=None, names=GTF_COLUMNS, dtype={"chrom": str},
                     compression="infer")
    df = df[df["feature"].isin(["gene", "ncRNA_gene", "pseudogene"])]
    name_keys, id_keys = (["Name", "gene_name"], ["gene_id", "ID"]) if gff3 else (["gene_name"], ["gene_id"])
    gene_id = _first_attribute(df["attributes"], id_keys, gff3).str.replace(r"^gene:", "", regex=True)
    return pd.DataFrame({
        "chrom": df["chrom"], "start": df["start"] - 1, "end": df["end"],  # 1-based closed -> 0-based half-open
        "gene_name": _first_attribute(df["attributes"], name_keys, gff3).fillna(gene_id),
        "gene_id": gene_id, "strand": df["strand"],
    })


def _read_bed(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", comment="#", header=None, dtype={0: str}, compression="infer")
    if df.shape[1] < 4:
        raise ValueError(f"BED annotation {path} needs at least 4 columns (chrom, start, end, name)")
    strand = df[5] if df.shape[1] >= 6 else "."
    return pd.DataFrame({"chrom": df[0], "start": df[1], "end": df[2], "gene_name": df[3], "gene_id": df[3],
                         "strand": strand})


def read_annotation(source) -> pd.DataFrame:
    """Gene table with ``chrom, start, end`` (0-based half-open), ``gene_name, gene_id, strand``
    and ``alt_name`` when the source has it, from a GTF, GFF3, BED or TSV path or a DataFrame."""
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"annotation file {path} not found")
        name = path.name.lower().removesuffix(".gz")
        if name.endswith(".gtf"):
            df = _read_gtf(path, gff3=False)
        elif name.endswith((".gff3", ".gff")):
            df = _read_gtf(path, gff3=True)
        elif name.endswith(".bed"):
            df = _read_bed(path)
        elif name.endswith((".tsv", ".txt")):
            df = pd.read_csv(path, sep="\t", dtype={"chrom": str}, compression="infer", na_values=["NA"])
        else:
            raise ValueError(f"cannot tell the format of {path}: expected .gtf, .gff3, .gff, .bed or .tsv "
                             "(optionally .gz)")
    missing = {"chrom", "start", "end", "gene_name"} - set(df.columns)
    if missing:
        raise ValueError(f"annotation lacks columns {sorted(missing)}; has {list(df.columns)}")
    df = df.dropna(subset=["chrom", "start", "end", "gene_name"]).reset_index(drop=True)
    if df.empty:
        raise ValueError("annotation holds no gene records")
    df["start"] = df["start"].astype(np.int64)
    df["end"] = df["end"].astype(np.int64)
    if "strand" not in df:
        df["strand"] = "."
    if "gene_id" not in df:
        df["gene_id"] = df["gene_name"]
    return df


def peak_coordinates(var: pd.DataFrame, var_names) -> pd.DataFrame:
    """``chrom, start, end`` per peak from ``var`` columns, else parsed from the peak names."""
    for c, s, e in PEAK_VAR_COLUMNS:
        if {c, s, e} <= set(var.columns):
            return pd.DataFrame({"chrom": var[c].astype(str).to_numpy(), "start": var[s].to_numpy(np.int64),
                                 "end": var[e].to_numpy(np.int64)})
    parsed = pd.Series(np.asarray(var_names, dtype=str)).str.extract(PEAK_NAME)
    bad = parsed["chrom"].isna()
    if bad.any():
        examples = list(np.asarray(var_names, dtype=str)[bad.to_numpy()][:3])
        raise ValueError(f"{int(bad.sum())} of {len(parsed)} peak names cannot be parsed as coordinates, e.g. "
                         f"{examples}; expected chr1:100-200, chr1-100-200 or chr1_100_200, or var columns "
                         "chrom/chromStart/chromEnd")
    return pd.DataFrame({"chrom": parsed["chrom"].to_numpy(), "start": parsed["start"].astype(np.int64).to_numpy(),
                         "end": parsed["end"].astype(np.int64).to_numpy()})


def gene_windows(genes: pd.DataFrame, upstream: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Gene body extended ``upstream`` bp before the TSS: left on ``+``, right on ``-``, both when unknown."""
    plus, minus = genes["strand"].to_numpy() == "+", genes["strand"].to_numpy() == "-"
    start = genes["start"].to_numpy() - np.where(minus, 0, upstream)
    end = genes["end"].to_numpy() + np.where(plus, 0, upstream)
    return np.maximum(start, 0), end


def peak_gene_overlaps(peaks: pd.DataFrame, genes: pd.DataFrame, upstream: int = 2000) -> sp.csr_matrix:
    """Binary peaks x genes matrix: 1 where the peak [start, end) overlaps the gene's window."""
    w_start, w_end = gene_windows(genes, upstream)
    g_chrom, p_chrom = chrom_key(genes["chrom"]), chrom_key(peaks["chrom"])
    p_start, p_end = peaks["start"].to_numpy(), peaks["end"].to_numpy()
    rows, cols = [], []
    for chrom in np.intersect1d(np.unique(p_chrom), np.unique(g_chrom)):
        g_idx = np.flatnonzero(g_chrom == chrom)
        order = g_idx[np.argsort(w_start[g_idx], kind="stable")]
        starts, ends = w_start[order], w_end[order]
        longest = int((ends - starts).max())
        for p in np.flatnonzero(p_chrom == chrom):
            lo = np.searchsorted(starts, p_start[p] - longest, side="left")
            hi = np.searchsorted(starts, p_end[p], side="left")  # windows starting before the peak ends
            hits = order[lo:hi][ends[lo:hi] > p_start[p]]
            rows.extend([p] * len(hits))
            cols.extend(hits)
    if not rows:
        raise ValueError(
            f"no peak overlaps any gene window: peak chromosomes {sorted(set(peaks['chrom']))[:5]} vs annotation "
            f"chromosomes {sorted(set(genes['chrom']))[:5]}; is the annotation for the same genome build?")
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(peaks), len(genes)))


def merge_genes_by_name(overlaps: sp.csr_matrix, genes: pd.DataFrame) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """One column per gene name (records sharing a name are united), genes with no peak dropped."""
    codes, names = pd.factorize(genes["gene_name"])
    collapse = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)),
                             shape=(len(codes), len(names)))
    merged = (overlaps @ collapse).tocsc()
    merged.data[:] = 1.0
    n_peaks = np.diff(merged.indptr)
    keep = np.flatnonzero(n_peaks > 0)
    first = genes.groupby(codes, sort=True).first()
    var = first.iloc[keep].drop(columns=["start", "end"], errors="ignore").copy()
    var.index = pd.Index(np.asarray(names)[keep], name=None)
    var["n_peaks"] = n_peaks[keep]
    return merged[:, keep].tocsr(), var
