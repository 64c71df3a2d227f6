#!/bin/sh
# SPDX-License-Identifier: BSD-3-Clause
# The storm: rank 1 of `fault_test --storm` is stopped and resumed
# (SIGSTOP/SIGCONT) again and again, for 20-400 ms at a time, while the ranks
# run collectives under a 200 ms timeout (STORM_OPS of them, 600, or as many
# as STORM_SECONDS, 60, allow). When they are done, rank 0 writes
# `done`; the rank is resumed for good, `ack` is written, and the ranks run 10
# collectives that must be exact. Exits with fault_test's status.
# Usage: storm.sh <mpiexec> <ranks> <fault_test> [fault_test options...]
set -u
mpiexec=$1 ranks=$2 prog=$3
shift 3
started=$(date +%s)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT INT TERM
"$mpiexec" -np "$ranks" "$prog" --storm "$dir" --storm-ops "${STORM_OPS:-600}" --storm-seconds "${STORM_SECONDS:-60}" \
  --timeout-ms 200 "$@" &
job=$!
i=0
while [ ! -f "$dir/pid.1" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
pid=$(cat "$dir/pid.1" 2>/dev/null || echo "")
stops=0
if [ -n "$pid" ]; then
  # Pseudo-random pauses from the shell's own counter: 20-400 ms stopped, 10-200 ms running.
  n=7
  while [ ! -f "$dir/done" ] && kill -0 "$pid" 2>/dev/null; do
    n=$(( (n * 1103515245 + 12345) % 2147483648 ))
    kill -STOP "$pid" 2>/dev/null && stops=$((stops + 1))
    sleep "0.$(printf %03d $(( 20 + n % 381 )))"
    kill -CONT "$pid" 2>/dev/null
    sleep "0.$(printf %03d $(( 10 + (n / 400) % 191 )))"
  done
  kill -CONT "$pid" 2>/dev/null
fi
touch "$dir/ack"
# The job must end within STORM_LIMIT_S seconds of the start (ctest's own
# limit is longer): past it, say where every rank is (its phase file, its
# process state, and its threads' stacks when gdb is there), then end it.
limit=${STORM_LIMIT_S:-150}
while kill -0 $job 2>/dev/null && [ "$(($(date +%s) - started))" -lt "$limit" ]; do sleep 0.2; done
if kill -0 $job 2>/dev/null; then
  echo "storm: the job has run past ${limit} s; where each rank is:"
  cat "$dir"/phase.* 2>/dev/null
  for f in "$dir"/pid.*; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    echo "--- $(basename "$f") = $p: $(grep '^State' /proc/"$p"/status 2>/dev/null)"
    if command -v gdb >/dev/null 2>&1; then
      gdb -p "$p" -batch -ex 'thread apply all bt 12' 2>/dev/null | grep '^#\|^Thread'
    fi
  done
  kill -CONT "$pid" 2>/dev/null
  kill $job 2>/dev/null
  sleep 2
  kill -9 $job 2>/dev/null
  wait $job
  echo "storm: ended after ${limit} s"
  exit 124
fi
wait $job
rc=$?
echo "storm: rank 1 stopped and resumed $stops times; exit $rc"
exit $rc
