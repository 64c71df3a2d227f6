#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Checks of sparcl-bench's files and exit codes, and of tools/plot.
#   cli_checks.sh SPARCL_BENCH MPIEXEC SOURCE_DIR WORK_DIR
# shellcheck disable=SC2015  # "test && ok || no": ok never fails
set -uo pipefail
BENCH=$1 MPIEXEC=$2 SRC=$3 WORK=$4
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
fails=0
ok() { echo "ok: $*"; }
no() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() { "$MPIEXEC" -np "$1" "$BENCH" "${@:2}"; }

# 1. A sweep into CSV and JSON: 2 sizes x 2 densities x (2 baselines + 2 algorithms) = 16 rows.
if run 2 -b 1K -e 4K -f 4 -d 0.01,0.1 -a auto,ring -n 2 -w 1 -c -q --csv out.csv --json out.json >out.txt 2>err.txt; then
  ok "sweep"
else
  no "sweep exited $?"; cat out.txt err.txt
fi
rows=$(($(wc -l <out.csv) - 1))
[[ $rows == 16 ]] && ok "CSV has 16 rows" || no "CSV has $rows rows, expected 16"
head -1 out.csv | grep -q '^ranks,transport,encoding,dtype,dist,overlap,elements,bytes,density,nnz_rank,result_nnz,algorithm,' \
  && ok "CSV header" || no "CSV header: $(head -1 out.csv)"
if awk -F, 'NR > 1 && $27 != "0" { bad = 1 } END { exit bad }' out.csv; then ok "CSV: no wrong values"; else no "CSV has wrong values"; fi
grep -q '^# wrong values in total: 0$' out.txt && ok "summary line" || no "no summary line"
for alg in MPI_Allreduce MPI_Allgatherv auto ring; do
  grep -q ",$alg," out.csv && ok "CSV has $alg rows" || no "CSV lacks $alg rows"
done
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3 || true)
if [[ -n $PY ]]; then
  if "$PY" - <<'PYEOF'
import json, csv
d = json.load(open("out.json"))
rows = list(csv.DictReader(open("out.csv")))
assert d["ranks"] == 2 and len(d["rows"]) == len(rows) == 16, (d["ranks"], len(d["rows"]))
for j, c in zip(d["rows"], rows):
    assert j["algorithm"] == c["algorithm"] and j["elements"] == int(c["elements"])
    assert j["wrong"] == 0 and j["time_avg_us"] > 0
    if j["algorithm"] not in ("MPI_Allreduce", "MPI_Allgatherv"):
        assert j["wire_source"] == "stats" and j["wire_bytes"] > 0
PYEOF
  then ok "JSON matches CSV"; else no "JSON"; fi
fi

# 2. -c finds wrong values: with --test-corrupt rank 0 gives sparcl one value off by one, so every
#    rank's sparcl result is wrong at one index (3 ranks x 2 algorithms = 6), the baselines are right, and
#    the exit status is 1.
run 3 -b 1K -e 1K -d 0.1 -a ring,split_allgather -n 1 -w 0 -c -q --test-corrupt --csv bad.csv >bad.txt 2>&1
rc=$?
[[ $rc == 1 ]] && ok "wrong values give exit status 1" || no "--test-corrupt: exit status $rc"
grep -q '^# wrong values in total: 6$' bad.txt && ok "-c counts 6 wrong values" || no "-c: $(grep wrong bad.txt)"
if awk -F, 'NR > 1 && (($12 ~ /^MPI_/ && $27 != "0") || ($12 !~ /^MPI_/ && $27 != "3")) { bad = 1 } END { exit bad }' bad.csv
then ok "wrong values per row"; else no "wrong values per row: $(cut -d, -f12,27 bad.csv | tr '\n' ' ')"; fi

# 3. Encodings: one row per encoding, with their names in the CSV; -c within each encoding's bound;
#    --compress rows carry the dense ring's bytes and the ratio.
if run 2 -b 4K -e 4K -d 0.05 -a ring -v raw,fp16,qsgd4 -n 1 -w 0 -c -q --csv enc.csv >enc.txt 2>&1; then
  ok "-v raw,fp16,qsgd4"
else
  no "-v raw,fp16,qsgd4 exited $?"; cat enc.txt
fi
encs=$(awk -F, 'NR > 1 && $12 == "ring" { print $3 }' enc.csv | tr '\n' ' ')
[[ $encs == "raw fp16 qsgd4 " ]] && ok "CSV encodings" || no "CSV encodings: $encs"
if run 2 -b 64K -e 64K -d 0.01 --compress topk -v raw,qsgd4 -n 1 -w 0 -q --csv cmp.csv >cmp.txt 2>&1; then
  ok "--compress topk"
else
  no "--compress exited $?"; cat cmp.txt
fi
if awk -F, 'NR > 1 && $12 == "topk/auto" && ($29 != 262144 || $30 <= 1) { bad = 1 } END { exit bad }' cmp.csv &&
  [[ $(grep -c ',topk/auto,' cmp.csv) == 2 ]]; then
  ok "--compress rows: dense ring bytes and ratio"
else
  no "--compress rows: $(cut -d, -f3,12,21,29,30 cmp.csv | tr '\n' ' ')"
fi
# --compress --dist zipf: skewed gradients, so the ranks' local top-k selections share indices and their
# exact sum has fewer nonzeros than with independent N(0,1) gradients.
for dist in uniform zipf; do
  run 2 -b 64K -e 64K -d 0.01 --compress topk --dist $dist -a split_allgather -n 1 -w 0 -q --csv $dist.csv \
    >$dist.txt 2>&1 || no "--compress --dist $dist exited $?"
done
u=$(awk -F, 'NR > 1 && $12 == "topk/split_allgather" { print $11 }' uniform.csv)
z=$(awk -F, 'NR > 1 && $12 == "topk/split_allgather" { print $11 }' zipf.csv)
[[ -n $u && -n $z && $z -lt $u ]] && grep -q ',zipf,' zipf.csv && ok "--compress --dist zipf: $z result nonzeros < $u" ||
  no "--compress --dist zipf: result nonzeros '$z', uniform '$u'"

# 4. Bad usage: exit 2 with a message.
expect_usage() {
  local out
  out=$(run 2 "$@" 2>&1 >/dev/null)
  local rc=$?
  [[ $rc != 0 ]] && grep -q "sparcl-bench: " <<<"$out" && ok "usage error for '$*'" || no "'$*' gave rc $rc: $out"
}
expect_usage --no-such-flag
expect_usage -b 1X
expect_usage -a nosuchalgo
expect_usage -d 2
expect_usage -v zstd
out=$(run 1 -v zstd 2>&1)
grep -q "unknown value encoding 'zstd'" <<<"$out" && ok "-v names the unknown encoding" || no "-v message: $out"
expect_usage --compress topk --dtype double
expect_usage --compress nosuchmethod
expect_usage --compress topk --dist clustered
out=$(run 1 -h 2>&1)
grep -q -- "--densities" <<<"$out" && ok "-h" || no "-h: $out"
# nccl-tests habits: the unit comes first in -h; -o sum and -g 1 run, other values and a type given
# to -d are refused with a message saying what sparcl-bench does instead.
sed -n 2p <<<"$out" | grep -q "Sizes are ELEMENTS" && ok "-h states the size unit first" || no "-h: $(sed -n 2p <<<"$out")"
expect_usage -o max
expect_usage -g 4
expect_usage -d float
out=$(run 2 -d float 2>&1)
grep -q -- "-d takes densities" <<<"$out" && grep -q -- "--dtype" <<<"$out" && ok "-d float: hint" || no "-d float: $out"
out=$(run 2 -o max 2>&1)
grep -q "SUM allreduce" <<<"$out" && ok "-o max: says what is measured" || no "-o max: $out"
expect_usage --median=1
# --opt=value and --opt value alike; the banner's version is major.minor.patch; a bytes column.
if run 2 --minelements=1K --maxelements 4K --stepfactor=4 --densities=0.01 -o sum -g 1 --iters=1 -w 0 --check=1 \
  -q --csv=eq.csv >eq.txt 2>&1; then ok "--opt=value, -o sum, -g 1"; else no "--opt=value run: $(cat eq.txt)"; fi
[[ $(($(wc -l <eq.csv) - 1)) == 6 ]] && ok "--opt=value: 6 rows" || no "--opt=value: $(wc -l <eq.csv) lines"
grep -Eq '^# sparcl-bench \(sparcl [0-9]+\.[0-9]+\.[0-9]+\)' eq.txt && ok "version as major.minor.patch" ||
  no "banner: $(head -1 eq.txt)"
awk '/^#/ && $2 == "elements" { ok = $3 == "bytes" } $1 == 4096 && $2 != 16384 { bad = 1 } END { exit bad || !ok }' eq.txt &&
  ok "bytes column" || no "bytes column: $(grep -E '^ +4096' eq.txt | head -1)"
# One rank: a warning, and busbw 0 (nccl-tests' convention).
run 1 -b 1K -e 1K -d 0.01 -n 1 -w 0 -q --csv one.csv >one.txt 2>&1
grep -q "warning: 1 rank" one.txt && ok "one rank: warning" || no "one rank: no warning: $(cat one.txt)"
awk -F, 'NR > 1 && $20 != "0.0000" { bad = 1 } END { exit bad }' one.csv && ok "one rank: busbw 0" ||
  no "one rank busbw: $(cut -d, -f20 one.csv | tr '\n' ' ')"

# 5. A transport this build may lack: runs (0) or says unsupported cleanly (3).
for tr in ofi ucx; do
  out=$(run 2 -t "$tr" -b 1K -e 1K -d 0.01 -n 1 -w 0 -c -q 2>&1)
  rc=$?
  if [[ $rc == 0 ]]; then ok "-t $tr runs"
  elif [[ $rc != 0 ]] && grep -q "transport $tr: unsupported" <<<"$out"; then ok "-t $tr: unsupported, reported cleanly"
  else no "-t $tr: rc $rc: $out"; fi
done
# Unsupported transport next to mpi: skipped, the rest runs.
if out=$(run 2 -t mpi,ofi,ucx -a ring -b 1K -e 1K -d 0.01 -n 1 -w 0 -c -q 2>&1); then
  ok "-t mpi,ofi,ucx runs what it can"
else
  no "-t mpi,ofi,ucx: $out"
fi

# 6. tools/plot (needs python3-matplotlib; skipped without it).
if [[ -n $PY ]] && "$PY" -c "import matplotlib" 2>/dev/null; then
  if "$PY" "$SRC/tools/plot" out.csv -o out.png --table >plot.txt 2>&1 && [[ -s out.png ]] &&
     grep -q '^| 1K | 1% |' plot.txt; then
    ok "tools/plot wrote out.png and the table"
  else
    no "tools/plot"; cat plot.txt
  fi
else
  echo "skip: tools/plot (python3-matplotlib is not installed)"
fi

echo "$fails failure(s)"
exit $((fails > 0))
