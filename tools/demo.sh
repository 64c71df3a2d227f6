#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The end-to-end demonstration: install dependencies, build sparcl, export
# the bladder gene-expression data, and train the 46M-parameter autoencoder
# on 4 ranks twice, with dense (MPI_Iallreduce) and with sparse (sparcl's
# top-k 1%, error feedback) gradient exchange, on an emulated 4-host cluster
# at 1 Gbit/s when network namespaces are permitted (root), on shared memory
# otherwise. Ends with two lines: the speedup per epoch and the difference in
# held-out reconstruction error. A few minutes; works as root without prompts.
#
#   tools/demo.sh                 # EPOCHS=6 WARMUP=1 by default
#   EPOCHS=10 tools/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EPOCHS=${EPOCHS:-6}
WARMUP=${WARMUP:-1}

echo "==> [1/4] Checking dependencies"
# shellcheck source=tools/deps.sh
source tools/deps.sh
sparcl_install_deps

echo "==> [2/4] Building (build/, Release)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target sparcl-train

echo "==> [3/4] Exporting the bladder data set (r-bioc-bladderbatch)"
DATA=build/data/bladder.bin
[[ -s $DATA ]] || bash tools/export-bladder "$DATA"

# Machines may have only 2 cores: let Open MPI oversubscribe.
export OMPI_MCA_rmaps_base_oversubscribe=1
if ((EUID == 0)); then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
OUT=build/demo
mkdir -p "$OUT"
TRAIN=$PWD/build/ml/sparcl-train
ARGS=(--workload autoencoder --data "$PWD/$DATA" --epochs "$EPOCHS" --batch 2 --optimizer adam --lr 1e-3)
if bash tools/emulate-cluster.sh --check >/dev/null 2>&1; then
  WHERE="an emulated 4-host cluster, 1 Gbit/s links"
  launch() { bash tools/emulate-cluster.sh -n 4 -r 1gbit -t 900 -- "$TRAIN" "$@"; }
else
  WHERE="shared memory (network namespaces are not permitted here)"
  launch() { mpirun -np 4 "$TRAIN" "$@"; }
fi

echo "==> [4/4] Training the autoencoder (22283-1024-64-1024-22283) on 4 ranks, $WHERE"
echo "--- dense: MPI_Iallreduce of every gradient"
launch "${ARGS[@]}" --comm dense-mpi --csv "$OUT/dense-mpi.csv" | tee "$OUT/dense-mpi.txt" | grep -E '^(epoch|summary)'
echo "--- sparse: sparcl top-k 1% with error feedback ($WARMUP dense warm-up epoch(s))"
launch "${ARGS[@]}" --comm topk --density 0.01 --warmup-epochs "$WARMUP" --csv "$OUT/topk.csv" |
  tee "$OUT/topk.txt" | grep -E '^(epoch|summary)'

# The two summary lines: "... epoch time X s ...; train MSE A, held-out MSE B".
field() { sed -n "s/^summary:.*$1 \([0-9.]*\).*/\1/p" "$2"; }
dense_t=$(field "epoch time" "$OUT/dense-mpi.txt") sparse_t=$(field "epoch time" "$OUT/topk.txt")
dense_m=$(field "held-out MSE" "$OUT/dense-mpi.txt") sparse_m=$(field "held-out MSE" "$OUT/topk.txt")
echo
awk -v dt="$dense_t" -v st="$sparse_t" -v dm="$dense_m" -v sm="$sparse_m" -v e="$EPOCHS" -v where="$WHERE" 'BEGIN {
  printf "speedup: an epoch takes %.2f s with sparse (top-k 1%%) and %.2f s with dense exchange: %.1fx faster (%s)\n", st, dt, dt / st, where
  printf "quality: held-out MSE after %d epochs %.4f sparse vs %.4f dense (%+.1f%%)\n", e, sm, dm, 100 * (sm / dm - 1)
}'
