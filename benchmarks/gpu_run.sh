#!/usr/bin/env bash
# The GPU rows of the benchmarks, for the workplace's device tool (benchmarks/performance.md, "On a GPU"): run from the
# repository root with the wheels scanpy & co. need in .whl (flax / optax in .whl_alt, used only if the machine's
# own fail to import) and the registry files in .gpu_data/{data,annotations}; results and logs go to $OUT.
#   bash benchmarks/gpu_run.sh [PART ...]   PART: throughput (zeisel with the torch twin, then 10^6 synthetic
#   cells; about 4 min), calls (each end-to-end call in a new process, with the compilation cache cold, then warm;
#   about 5 min), profile (a cProfile of zeisel cae; about 1.5 min), transfer (label transfer to a synthetic
#   ATAC query of TRANSFER_CELLS cells from 10^5 RNA cells, phases timed: transfer_scaling.py; needs psutil in
#   .whl; not yet run on a GPU: generating the data takes about 2 min at the default 3 x 10^5 on a 2-core CPU, 8.5 min
#   at 10^6, too long beside the run in one call of the device tool). Default: throughput calls.
# CELLS (default 10^6) sets the throughput run's size; SKIP_INSTALL=1 runs in the current environment.
set -u
export PYTHONUNBUFFERED=1 OMICS_CL_DATA_DIR=$PWD/.gpu_data/data OMICS_CL_OFFLINE=1
PY=${PY:-python3}
if [ -z "${SKIP_INSTALL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
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
step() {  # step NAME SECONDS COMMAND...: the command's output appended to $OUT/NAME.log, its end to the reply
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date +%T))"
  timeout "$limit" "$@" >> "$OUT/$name.log" 2>&1; echo "rc $?" >> "$OUT/$name.log"
  tail -n 12 "$OUT/$name.log"
}
for part in ${*:-throughput calls}; do case $part in
throughput)
  step throughput 100 $PY benchmarks/throughput.py --datasets zeisel_cortex --epochs 10 --paths host,device,raw,torch \
    --anchors-python "$PY" --torch-device cuda --torch-threads 4 --json "$OUT/throughput.json"
  step throughput 170 $PY benchmarks/throughput.py --datasets synthetic --synthetic-cells "${CELLS:-1000000}" \
    --epochs 2 --paths device,raw,host --json "$OUT/throughput.json" --append ;;
calls)
  for job in cluster:zeisel_cortex:cae transfer integrate cluster:zeisel_cortex:pca; do
    for cache in cold warm; do
      step end_to_end 120 $PY benchmarks/end_to_end.py --jobs $job --seeds 1 --json "$OUT/end_to_end.json" \
        --compilation-cache "/tmp/jax_cache_${job//:/_}"
    done
  done ;;
profile)
  step profile 120 $PY benchmarks/end_to_end.py --jobs cluster:zeisel_cortex:cae --seeds 1 \
    --json "$OUT/end_to_end_profiled.json" --profile "$OUT/profile.txt" ;;
transfer)
  step transfer_scaling 560 $PY benchmarks/transfer_scaling.py --query-cells "${TRANSFER_CELLS:-300000}" \
    --reference-cells 100000 --json "$OUT/transfer_scaling.json" ;;
*) echo "unknown part $part"; exit 2 ;;
esac; done
echo "== done ($(date +%T))"
