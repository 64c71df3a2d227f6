#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# Instructions per call of one method against another, from callgrind runs of
# rank 0 at two call counts each (the difference cancels setup and teardown):
#   callgrind-per-call.py CALLS A_SHORT A_LONG B_SHORT B_LONG
# where A_LONG ran CALLS more calls than A_SHORT (and B likewise). Prints the
# total per call of each, then the functions whose per-call instructions
# differ most, leaving out the polling of the transport and MPI (how often a
# rank polls depends on timing, not on the method's own work), and their sum.
import re
import subprocess
import sys

POLLING = re.compile(r"ompi|opal|pml|btl|vader|Improbe|MpiRecv|MpiSend|PMPI|0x0000|progress|step\(|advance|"
                     r"libnbc|NBC|mutex|_test|::test|Test")


def profile(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True,
                         check=True).stdout
    total, functions = 0, {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)", line)
        if not m:
            continue
        count, name = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in name:
            total = count
            continue
        name = re.sub(r"\s*\[[^\]]*\]$", "", name)
        functions[name] = functions.get(name, 0) + count
    return total, functions


def per_call(short, long, calls):
    (t1, f1), (t2, f2) = profile(short), profile(long)
    return (t2 - t1) / calls, {k: (f2.get(k, 0) - f1.get(k, 0)) / calls for k in set(f1) | set(f2)}


def main():
    calls = int(sys.argv[1])
    a_total, a = per_call(sys.argv[2], sys.argv[3], calls)
    b_total, b = per_call(sys.argv[4], sys.argv[5], calls)
    print(f"instructions per call: A {a_total:.0f}, B {b_total:.0f}")
    rows = [(a.get(k, 0) - b.get(k, 0), a.get(k, 0), b.get(k, 0), k) for k in set(a) | set(b)
            if not POLLING.search(k)]
    rows.sort(key=lambda r: -abs(r[0]))
    print(f"{'A - B':>9} {'A':>9} {'B':>9}  function")
    for d, x, y, k in rows[:25]:
        print(f"{d:9.1f} {x:9.1f} {y:9.1f}  {k[:120]}")
    print(f"A - B per call, polling left out: {sum(r[0] for r in rows):.0f} instructions")


if __name__ == "__main__":
    main()
