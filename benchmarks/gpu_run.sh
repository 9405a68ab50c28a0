#!/usr/bin/env bash
# The GPU rows of the benchmarks in one call of the workplace's device tool (benchmarks/README.md, "On a GPU"):
# run from the repository root with the wheels scanpy & co. need in .whl (flax / optax in .whl_alt, used only if the
# machine's own fail to import), the registry files in .gpu_data/{data,annotations}; results and logs go to $OUT.
# CELLS (default 10^6) sets the synthetic throughput run's size; SKIP_INSTALL=1 runs in the current environment.
set -u
export PYTHONUNBUFFERED=1 OMICS_CL_DATA_DIR=$PWD/.gpu_data/data OMICS_CL_OFFLINE=1
PY=${PY:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
{ nvidia-smi; $PY -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|flax|optax|torch|numpy|scipy|anndata|scanpy) "; } \
  > "$OUT/env.txt" 2>&1
smoke='import jax, omics_cl.tl; from flax import nnx; print("jax devices", jax.devices())'
if ! $PY -c "$smoke"; then
  echo "the machine's flax / optax failed: using the carried ones"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl_alt/*.whl
  $PY -c "$smoke" || exit 1
fi
step() {  # step NAME SECONDS COMMAND...: the command's output to $OUT/NAME.log, its end to the reply
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T))"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; echo "rc $?" >> "$OUT/$name.log"
  tail -n 12 "$OUT/$name.log"
}
step throughput_zeisel 100 $PY benchmarks/throughput.py --datasets zeisel_cortex --epochs 10 \
  --paths host,device,raw,torch --anchors-python "$PY" --torch-device cuda --torch-threads 4 --json "$OUT/throughput.json"
step throughput_million 170 $PY benchmarks/throughput.py --datasets synthetic --synthetic-cells "${CELLS:-1000000}" \
  --epochs 2 --paths device,raw,host --json "$OUT/throughput.json" --append
step end_to_end 200 $PY benchmarks/end_to_end.py --jobs cluster:zeisel_cortex:cae,transfer,integrate --seeds 1 \
  --json "$OUT/end_to_end.json"
echo "== done ($(date +%T))"
