#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# sparcl-train end to end on 2 ranks: a few steps of the CNN on a slice of
# Fashion-MNIST with every --comm, the autoencoder on the bladder export
# (dense and top-k with a dense warm-up epoch, node saliency), the CSV log,
# tools/plot's training charts, and the exit status of bad usage.
#   cli_checks.sh SPARCL_TRAIN MPIEXEC SOURCE_DIR WORK_DIR [SPARCL_BENCH]
# Exit 77 when neither data set is installed.
# shellcheck disable=SC2015  # "test && ok || no": ok never fails
set -uo pipefail
TRAIN=$1 MPIEXEC=$2 SRC=$3 WORK=$4 BENCH=${5:-}
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fails=0 ran=0
ok() { echo "ok: $*"; }
no() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() { "$MPIEXEC" -np 2 "$TRAIN" --progress off "$@"; }
# run_ok LABEL OUT ARGS...: a run whose output goes to OUT, which must succeed.
run_ok() {
  local label=$1 out=$2
  shift 2
  if run "$@" >"$out" 2>&1; then ok "$label"; else no "$label exited $?"; cat "$out"; fi
}

# 1. CNN, every exchange: 256 training images, 16 steps of 2 x 8 per epoch, 2 epochs; every layer
#    but the first convolution compressed.
FMNIST=/usr/share/datasets/fashion-mnist
if [[ -r $FMNIST/train-images-idx3-ubyte.gz ]]; then
  ran=1
  for comm in dense-mpi dense topk topk-q; do
    run_ok "cnn --comm $comm" "cnn-$comm.txt" --workload cnn --comm "$comm" --density 0.05 --bits 4 --epochs 2 \
      --train-samples 256 --test-samples 128 --channels 4,8 --fc 64 --dense-below 1000 --eval-every 8 \
      --csv "cnn-$comm.csv"
    grep -q "^summary: cnn, comm $comm" "cnn-$comm.txt" && ok "cnn $comm summary" || no "cnn $comm: no summary line"
    # 256 / 16 = 16 steps per epoch, a row every 8 steps: 4 rows.
    rows=$(($(wc -l <"cnn-$comm.csv") - 1))
    [[ $rows == 4 ]] && ok "cnn $comm: 4 CSV rows" || no "cnn $comm: $rows CSV rows, expected 4"
  done
  # With --eval-every the epoch line reports the whole epoch: its training time and bytes are the sums
  # of the epoch's CSV rows.
  for e in 1 2; do
    want=$(awk -F, -v e="$e" 'NR > 1 && $9 == e { t += $13; mb += $24 } END { printf "%.2f s training|sent %.1f MB", t, mb }' cnn-topk.csv)
    line=$(grep "^epoch $e: " cnn-topk.txt)
    [[ $line == *"${want%|*}"* && $line == *"${want#*|}"* ]] && ok "epoch $e line sums its CSV rows" ||
      no "epoch $e line '$line', CSV rows sum to '$want'"
  done
  # Global selection, with a gradient trace: one file per rank, 16 steps of every compressed layer,
  # that trace-summary reads back; a truncated trace is rejected with its offset.
  run_ok "cnn --selection global --record-trace" "cnn-global.txt" --workload cnn --comm topk --density 0.05 \
    --selection global --epochs 1 --train-samples 256 --test-samples 128 --channels 4,8 --fc 64 --dense-below 1000 \
    --record-trace trace --csv cnn-global.csv
  grep -q "^summary: cnn, comm topk+global density 0.05" cnn-global.txt && ok "global selection summary" ||
    no "global selection: $(grep summary cnn-global.txt)"
  if "$TRAIN" trace-summary trace.1 >trace.txt 2>&1 && grep -q "rank 1 of 2, .* steps 0..15" trace.txt; then
    ok "trace-summary reads rank 1's trace"
  else no "trace-summary: $(cat trace.txt)"; fi
  head -c 100 trace.0 >trace.cut
  if "$TRAIN" trace-summary trace.cut >cut.txt 2>&1; then no "a truncated trace was accepted"
  else grep -q "trace trace.cut: offset [0-9]*: " cut.txt && ok "a truncated trace is rejected with its offset" ||
    no "truncated trace: $(cat cut.txt)"; fi
  # sparcl-bench replays it: on 3 ranks (rank 2 replays recorded rank 0 one step earlier), one
  # point per compressed layer (here the one of 25152 entries); a missing trace fails every rank with
  # exit status 2.
  if [[ -n $BENCH ]]; then
    if "$MPIEXEC" -np 3 "$BENCH" --trace trace -a split_allgather -n 1 -w 0 -q >replay.txt 2>&1 &&
      grep -q "dist trace (trace.<rank>: 2 ranks recorded, step 15" replay.txt &&
      [[ $(grep -c "^ *25152 .* split_allgather " replay.txt) == 1 ]]; then ok "sparcl-bench --trace replays the layer"
    else no "sparcl-bench --trace: $(cat replay.txt)"; fi
    # With --compress, each rank's gradient is nonzero at its replayed indices only, so local top-k
    # selects exactly them (the union, result_nnz, is the plain replay's) and global selection runs on them.
    if "$MPIEXEC" -np 3 "$BENCH" --trace trace --compress topk -a split_allgather,global --baselines none -n 1 -w 0 \
      -q >replay-c.txt 2>&1 && grep -q "N(0,1) at the indices replayed from trace.<rank>" replay-c.txt &&
      [[ $(grep -c "^ *25152 .* topk/global " replay-c.txt) == 1 ]] &&
      [[ $(awk '$6 == "split_allgather" { print $5 }' replay.txt) == \
        $(awk '$6 == "topk/split_allgather" { print $5 }' replay-c.txt) ]]; then
      ok "sparcl-bench --trace --compress selects the replayed indices"
    else no "sparcl-bench --trace --compress: $(cat replay-c.txt)"; fi
    "$MPIEXEC" -np 2 "$BENCH" --trace missing -n 1 -q >missing.txt 2>&1
    rc=$?
    [[ $rc == 2 ]] && grep -q "missing.0: cannot open" missing.txt && ok "a missing trace fails with status 2" ||
      no "missing trace: exit $rc: $(head -3 missing.txt)"
  fi
  # Linear learning-rate scaling: 2 ranks double sgd's 0.02, reached over the first epoch (the CSV
  # logs the rate of each row's last step).
  run_ok "cnn --lr-scaling linear" cnn-lr.txt --workload cnn --comm dense --epochs 2 --train-samples 256 \
    --test-samples 64 --channels 4,8 --fc 64 --eval-every 4 --lr-scaling linear --lr-warmup-epochs 1 --csv cnn-lr.csv
  grep -q "lr 0.02 x 2 ranks = 0.04 after 1 warm-up epochs" cnn-lr.txt && ok "lr scaling is announced" ||
    no "lr scaling: $(grep ' lr ' cnn-lr.txt)"
  awk -F, 'NR == 2 && !($7 > 0.02 && $7 < 0.04) { bad = 1 } END { if ($7 != 0.04) bad = 1; exit bad }' cnn-lr.csv &&
    ok "lr ramps from 0.02 to 0.04" || no "lr column: $(cut -d, -f7 cnn-lr.csv | tr '\n' ' ')"
  # --opt=value as well as --opt value; the progress bar shows an ETA.
  if "$MPIEXEC" -np 2 "$TRAIN" --workload=cnn --comm=topk --density=0.05 --epochs=1 --train-samples=64 \
    --test-samples=32 --channels=4,8 --fc=64 --progress=on >eq.txt 2>eq.err; then ok "--opt=value"
  else no "--opt=value exited $?"; cat eq.txt eq.err; fi
  grep -q "comm topk (density 0.05" eq.txt && ok "--opt=value values are used" || no "--opt=value: $(head -1 eq.txt)"
  grep -q "ETA" eq.err && ok "progress bar has an ETA" || no "progress bar: $(tr '\r' '\n' <eq.err | tail -2)"
  head -1 cnn-topk.csv | grep -q '^workload,comm,ranks,density,bits,optimizer,lr,batch,epoch,step,samples,wall_s,' \
    && ok "CSV header" || no "CSV header: $(head -1 cnn-topk.csv)"
  awk -F, 'NR > 1 && ($2 != "topk-q" || $5 != "4" || $4 != "0.05") { bad = 1 } END { exit bad }' cnn-topk-q.csv \
    && ok "topk-q rows name density and bits" || no "topk-q rows: $(sed -n 2p cnn-topk-q.csv)"
  # Top-k at 5% sends under half of what the dense exchange sends (which skips zeros: ~4x seen).
  awk -F, 'FNR > 1 { s[FILENAME] += $NF } END { exit !(s["cnn-topk.csv"] * 2 < s["cnn-dense.csv"]) }' \
    cnn-topk.csv cnn-dense.csv && ok "topk sends less than dense" || no "topk did not send less than dense"
  if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
    if "$SRC/tools/plot" --train cnn-dense-mpi.csv cnn-dense.csv cnn-topk.csv cnn-topk-q.csv -o cnn.png >plot.txt 2>&1 &&
      [[ -s cnn.png ]]; then ok "tools/plot --train"; else no "tools/plot --train"; cat plot.txt; fi
  fi
else
  echo "skip: dataset-fashion-mnist is not installed"
fi

# 2. Autoencoder on the real export (a small model: 22283 -> 32 -> 8 -> 32 -> 22283).
if bash "$SRC/tools/export-bladder" bladder.bin >export.txt 2>&1; then
  ran=1
  for comm in dense topk; do
    run_ok "autoencoder --comm $comm" "ae-$comm.txt" --workload autoencoder --data bladder.bin --hidden 32,8 \
      --batch 4 --epochs 3 --comm "$comm" --warmup-epochs 1 --saliency "sal-$comm.csv" --csv "ae-$comm.csv"
    grep -q "held-out MSE" "ae-$comm.txt" && ok "autoencoder $comm summary" || no "autoencoder $comm: no summary"
    nodes=$(($(wc -l <"sal-$comm.csv") - 1))
    [[ $nodes == 8 ]] && ok "saliency of 8 nodes" || no "saliency file has $nodes rows"
  done
  grep -q "(dense warm-up)" ae-topk.txt && ok "warm-up epoch is dense" || no "no dense warm-up epoch"
  awk -F, 'NR == 2 && $23 != 0 { bad = 1 } NR == 4 && $23 != 1 { bad = 1 } END { exit bad }' ae-topk.csv \
    && ok "CSV marks compressed epochs" || no "compressed column: $(cut -d, -f23 ae-topk.csv | tr '\n' ' ')"
  "$TRAIN" compare-saliency sal-dense.csv sal-topk.csv >cmp.txt 2>&1 &&
    grep -q "Spearman rho" cmp.txt && ok "compare-saliency" || { no "compare-saliency"; cat cmp.txt; }
elif [[ $? == 77 ]]; then
  cat export.txt
  echo "skip: R or r-bioc-bladderbatch is not installed"
else
  no "tools/export-bladder failed"; cat export.txt
fi

# 3. Bad usage: exit 2 with a message, quickly (no hang, no MPI_Abort).
expect_usage() {
  local out rc
  out=$(timeout 60 "$MPIEXEC" -np 2 "$TRAIN" "$@" 2>&1 >/dev/null)
  rc=$?
  [[ $rc == 2 && $out == *"$1"* || $rc == 2 && $out == *sparcl-train:* ]] && ok "usage error: ${*:2}" ||
    no "$* exited $rc: $out"
}
expect_usage "--workload" --comm topk
expect_usage "unknown --comm" --workload cnn --comm fast
expect_usage "needs --data" --workload autoencoder
expect_usage "--bits" --workload cnn --comm topk-q --bits 3 --train-samples 16 --test-samples 16
expect_usage "--density" --workload cnn --comm topk --density 0 --train-samples 16 --test-samples 16
expect_usage "takes no value" --workload cnn --quiet=1
expect_usage "--lr-scaling must be" --workload cnn --lr-scaling square
expect_usage "needs --lr-scaling linear" --workload cnn --lr-warmup-epochs 2
# Options are checked before anything is loaded: no model summary precedes the error.
out=$(timeout 60 "$MPIEXEC" -np 2 "$TRAIN" --workload cnn --comm topk --density 2 2>&1)
rc=$?
[[ $rc == 2 && $out == *"--density must lie in (0, 1]"* && $out != *parameters* ]] &&
  ok "--density 2 refused before loading" || no "--density 2: exit $rc: $out"
out=$(timeout 60 "$MPIEXEC" -np 2 "$TRAIN" --workload autoencoder --data missing.bin 2>&1)
rc=$?
[[ $rc != 0 && $out == *"missing.bin: cannot open"* ]] && ok "missing data file: exit $rc" ||
  no "missing data file: exit $rc: $out"

((ran)) || { echo "neither data set is installed: skipped"; exit 77; }
echo "$fails failure(s)"
((fails == 0))
