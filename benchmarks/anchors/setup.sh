#!/usr/bin/env bash
# Create the anchors environment (scGLUE, muon, scvi-tools) beside the project, never inside it.
# usage: benchmarks/anchors/setup.sh [VENV_DIR]   (default ../anchors-venv)
set -euo pipefail
venv="${1:-$(cd "$(dirname "$0")/../../.." && pwd)/anchors-venv}"
python3 -m venv "$venv"
# torch first, pinned: with it present, scglue's torch requirement pulls no CUDA packages
"$venv/bin/pip" install torch==2.13.0
# pynndescent 0.7 returns sparse arrays that scanpy 1.11 neighbors cannot read (as in omics_cl itself)
"$venv/bin/pip" install scglue==0.4.1 scikit-misc pynndescent==0.6.0
# integration anchors: muon (WNN) and scvi-tools (MultiVI)
"$venv/bin/pip" install muon==0.1.9 scvi-tools==1.4.2
command -v bedtools >/dev/null || echo "also install the bedtools program (Debian: apt-get install bedtools)" >&2
echo "export OMICS_CL_ANCHORS_PYTHON=$venv/bin/python"
