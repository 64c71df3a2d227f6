#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The trainer's whole measurement session (issue 7, item 7): both workloads,
# every --comm, on shared memory and on the emulated 4-host cluster at
# 1 Gbit/s, one after the other in one session; CSV logs, charts, tables and
# a summary with the goals go to bench/results/train/ (or --out).
#
#   bench/train/run-results.sh                 # the full session (about 1.5 h on a 2-core VM)
#   bench/train/run-results.sh --quick         # the same pipeline on a few steps (minutes)
#   bench/train/run-results.sh --only cnn --nets cluster
#
# Needs a build (cmake --build build) with the trainer, Rscript with
# r-bioc-bladderbatch, dataset-fashion-mnist, and root for the emulated
# cluster (without it, the cluster runs are skipped and said so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD

OUT=bench/results/train
QUICK=0
ONLY="autoencoder cnn"
NETS="shm cluster"
COMMS="dense-mpi dense topk topk-q"
RANKS=4
RATE=1gbit
TRAIN=$ROOT/build/ml/sparcl-train
usage() {
  sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --quick, --out DIR, --only autoencoder|cnn, --nets 'shm cluster', --comms LIST, --train PATH"
}
while (($#)); do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --nets) NETS=$2; shift 2 ;;
    --comms) COMMS=$2; shift 2 ;;
    --train) TRAIN=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ -x $TRAIN ]] || { echo "run-results: $TRAIN not found: build first (cmake --build build)" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$ROOT/build/data/bladder.bin
[[ -s $DATA ]] || bash tools/export-bladder "$DATA"

export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# Settings of the session (docs/trainer.md explains them). Quick mode keeps
# the pipeline and cuts the lengths.
AE_ARGS=(--workload autoencoder --data "$DATA" --hidden 1024,64 --batch 2 --optimizer adam --lr 1e-3
         --warmup-epochs 2 --epochs 20)
CNN_ARGS=(--workload cnn --channels 16,32 --fc 2048 --batch 8 --optimizer sgd --lr 0.02 --momentum 0.9
          --epochs 4 --eval-every 200 --target-acc 0.88 --stop-at-target)
if ((QUICK)); then
  AE_ARGS=(--workload autoencoder --data "$DATA" --hidden 1024,64 --batch 2 --optimizer adam --lr 1e-3
           --warmup-epochs 1 --epochs 3)
  CNN_ARGS=(--workload cnn --channels 16,32 --fc 2048 --batch 8 --optimizer sgd --lr 0.02 --momentum 0.9
            --epochs 1 --train-samples 3200 --test-samples 1000 --eval-every 50 --target-acc 0.70)
fi
comm_args() {  # the exchange settings of each --comm
  case "$1" in
    topk) echo "--density 0.01" ;;
    topk-q) echo "--density 0.01 --bits 4" ;;
  esac
}

{
  echo "# sparcl-train measurement session, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), $(nproc) cores, $(uname -r)"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/commands.txt"

CLUSTER_OK=1
if [[ $NETS == *cluster* ]] && ! bash tools/emulate-cluster.sh --check >/dev/null 2>&1; then
  echo "run-results: network namespaces are not permitted here: the cluster runs are skipped" | tee -a "$OUT/commands.txt"
  CLUSTER_OK=0
fi

for net in $NETS; do
  [[ $net == cluster && $CLUSTER_OK == 0 ]] && continue
  for wl in $ONLY; do
    if [[ $wl == autoencoder ]]; then args=("${AE_ARGS[@]}"); else args=("${CNN_ARGS[@]}"); fi
    csvs=()
    for comm in $COMMS; do
      name=$net-$wl-$comm
      # shellcheck disable=SC2207
      extra=($(comm_args "$comm"))
      run=("$TRAIN" "${args[@]}" --comm "$comm" "${extra[@]}" --progress off --csv "$OUT/$name.csv")
      [[ $wl == autoencoder ]] && run+=(--saliency "$OUT/$name-saliency.csv")
      if [[ $net == shm ]]; then
        cmd=(mpirun -np "$RANKS" "${run[@]}")
      else
        cmd=(bash tools/emulate-cluster.sh -n "$RANKS" -r "$RATE" -t 7200 -- "${run[@]}")
      fi
      echo "${cmd[*]}" | sed "s|$ROOT/||g" >>"$OUT/commands.txt"
      echo "==> $name (load $(cut -d' ' -f1 /proc/loadavg))"
      "${cmd[@]}" >"$OUT/$name.txt" 2>&1 || { echo "run-results: $name failed:"; tail -20 "$OUT/$name.txt"; exit 1; }
      grep '^summary' "$OUT/$name.txt"
      csvs+=("$OUT/$name.csv")
    done
    where="shared memory"
    [[ $net == cluster ]] && where="emulated $RANKS-host cluster, ${RATE/gbit/ Gbit/s} links"
    /usr/bin/python3 tools/plot --train "${csvs[@]}" -o "$OUT/$net-$wl.png" --title "sparcl-train $wl, $RANKS ranks, $where" \
      --table --target "$([[ $QUICK == 1 && $wl == cnn ]] && echo 0.70 || echo 0.88)" | grep -v '^plot: wrote' >"$OUT/$net-$wl.md"
  done
done

# Node saliency: the ranking of each sparse run against the dense-mpi run's.
for net in $NETS; do
  ref=$OUT/$net-autoencoder-dense-mpi-saliency.csv
  [[ -s $ref ]] || continue
  for comm in dense topk topk-q; do
    f=$OUT/$net-autoencoder-$comm-saliency.csv
    [[ -s $f ]] && echo "$net $comm vs dense-mpi: $("$TRAIN" compare-saliency "$ref" "$f")"
  done
done >"$OUT/saliency.txt"

{
  cat "$OUT/commands.txt"
  echo
  for net in $NETS; do
    for wl in $ONLY; do
      f=$OUT/$net-$wl.md
      [[ -s $f ]] || continue
      echo "## $wl, $([[ $net == shm ]] && echo 'shared memory' || echo "emulated cluster at $RATE") ($net-$wl.png)"
      echo
      cat "$f"
      echo
    done
  done
  echo "## node saliency (bottleneck, cancer vs normal)"
  echo
  sed 's/^/    /' "$OUT/saliency.txt"
  echo
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/summary.md"
echo "run-results: wrote $OUT/summary.md"
