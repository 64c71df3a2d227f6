#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# Point-to-point ping-pong of each sparcl transport backend beside the
# library's own tool, in the same run, on 2 processes of this host:
#
#   path         native tool                                   sparcl-pingpong with
#   ofi-tcp      fi_pingpong -e rdm -m tagged -p "tcp;ofi_rxm"  SPARCL_TRANSPORT=ofi, same provider
#   ofi-shm      fi_pingpong -e rdm -m tagged -p shm            SPARCL_TRANSPORT=ofi, same provider
#   ucx-tcp      ucx_perftest -t tag_lat -e (PEER errors)       SPARCL_TRANSPORT=ucx (PEER errors, the default)
#   ucx-sm       ucx_perftest -t tag_lat -e (PEER errors)       SPARCL_TRANSPORT=ucx (PEER errors, the default)
#   ucx-sm-none  ucx_perftest -t tag_lat (no error handling)    SPARCL_UCX_ERROR_HANDLING=none
#   mpi-shm      MPI_Send/MPI_Recv ping-pong (Open MPI vader)   SPARCL_TRANSPORT=mpi, same process pair
#   mpi-tcp      the same over --mca btl self,tcp (loopback)    SPARCL_TRANSPORT=mpi
#
# tcp paths use the loopback interface (FI_TCP_IFACE=lo, UCX_NET_DEVICES=lo,
# btl_tcp_if_include lo); ucx-tcp and ucx-sm set UCX_TLS=tcp,self and
# sm,self. Every figure is one-way time (half a round trip) and bytes per
# one-way time (MB = 10^6 bytes); each size runs clamp(256 MiB / size, 10,
# 1000) round trips in both tools. Each repetition runs every path's native
# tool and sparcl-pingpong one after the other; the table shows medians
# over repetitions and, for the ratio sparcl/native (of bandwidths), its
# minimum and maximum. The MPI column is the MPI ping-pong that
# sparcl-pingpong runs beside sparcl in the same process pair.
#
# Usage: bench/transport/compare.sh [-r repetitions] [-s sizes] [-B build_dir] [-c raw.csv] [-n nice] [paths...]
#   defaults: -r 3 -s 8,64,512,4K,32K,256K,1M,4M,16M,64M -B build, every path
#   -n N runs both tools' processes at niceness N (e.g. -10, as root) so that
#   a ping-pong pair is not starved on a loaded machine
set -u
reps=3
sizes=8,64,512,4K,32K,256K,1M,4M,16M,64M
build=build
raw=
niceness=
while getopts "r:s:B:c:n:" opt; do
  case $opt in
    r) reps=$OPTARG ;;
    s) sizes=$OPTARG ;;
    B) build=$OPTARG ;;
    c) raw=$OPTARG ;;
    n) niceness=$OPTARG ;;
    *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
paths=${*:-ofi-tcp ofi-shm ucx-tcp ucx-sm ucx-sm-none mpi-shm mpi-tcp}
pingpong=$build/bench/sparcl-pingpong
[ -x "$pingpong" ] || { echo "no $pingpong: build first (cmake --build $build)" >&2; exit 2; }
for tool in mpirun fi_pingpong ucx_perftest; do
  command -v $tool > /dev/null || { echo "missing $tool (packages: openmpi-bin libfabric-bin ucx-utils)" >&2; exit 2; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
data=$(mktemp /tmp/sparcl-compare.XXXXXX)
trap 'rm -f "$data"' EXIT
port=$((20000 + $$ % 20000))
run=(env)
[ -n "$niceness" ] && run=(nice -n "$niceness" env)

bytes_of() {  # 4K -> 4096
  case $1 in
    *K) echo $(( ${1%K} << 10 )) ;; *M) echo $(( ${1%M} << 20 )) ;; *G) echo $(( ${1%G} << 30 )) ;; *) echo "$1" ;;
  esac
}
iterations() { local n=$(( (256 << 20) / $1 )); [ $n -gt 1000 ] && n=1000; [ $n -lt 10 ] && n=10; echo $n; }
record() { echo "$1 $2 $3 $4" >> "$data"; }  # path bytes column one_way_us

# Environment of a path (for both tools) and its mpirun flags.
setup() {
  path_env=() mpi_flags=()
  case $1 in
    ofi-tcp) path_env=(SPARCL_TRANSPORT=ofi "SPARCL_OFI_PROVIDER=tcp;ofi_rxm" FI_TCP_IFACE=lo) ;;
    ofi-shm) path_env=(SPARCL_TRANSPORT=ofi SPARCL_OFI_PROVIDER=shm) ;;
    ucx-tcp) path_env=(SPARCL_TRANSPORT=ucx UCX_TLS=tcp,self UCX_NET_DEVICES=lo) ;;
    ucx-sm) path_env=(SPARCL_TRANSPORT=ucx UCX_TLS=sm,self UCX_POSIX_ERROR_HANDLING=y UCX_SYSV_ERROR_HANDLING=y) ;;
    ucx-sm-none) path_env=(SPARCL_TRANSPORT=ucx UCX_TLS=sm,self SPARCL_UCX_ERROR_HANDLING=none) ;;
    mpi-shm) path_env=(SPARCL_TRANSPORT=mpi) ;;
    mpi-tcp) path_env=(SPARCL_TRANSPORT=mpi); mpi_flags=(--mca btl self,tcp --mca btl_tcp_if_include lo) ;;
    *) echo "unknown path $1" >&2; exit 2 ;;
  esac
}

# The native tool for one size: a server in the background, a client here
# (retried while the server is not listening yet).
native() {  # path bytes
  local path=$1 bytes=$2 n line= try; n=$(iterations "$bytes")
  port=$((port + 1))
  case $path in
    ofi-*)
      local prov=shm; [ "$path" = ofi-tcp ] && prov="tcp;ofi_rxm"
      local flags=(-e rdm -m tagged -p "$prov" -I "$n" -S "$bytes")
      "${run[@]}" "${path_env[@]}" timeout 300 fi_pingpong "${flags[@]}" -B $port > /dev/null 2>&1 &
      for try in 1 2 3 4 5 6 7 8 9 10; do
        sleep 0.3
        line=$("${run[@]}" "${path_env[@]}" timeout 300 fi_pingpong "${flags[@]}" -P $port 127.0.0.1 2>&1 |
               awk '$3 ~ /^=/ {print $7}')
        [ -n "$line" ] && break
      done ;;
    ucx-*)
      local flags=(-t tag_lat -s "$bytes" -n "$n" -w $(( n / 10 + 2 )) -p $port)
      [ "$path" = ucx-sm-none ] || flags+=(-e)
      "${run[@]}" "${path_env[@]}" timeout 300 ucx_perftest "${flags[@]}" > /dev/null 2>&1 &
      for try in 1 2 3 4 5 6 7 8 9 10; do
        sleep 0.3
        line=$("${run[@]}" "${path_env[@]}" timeout 300 ucx_perftest 127.0.0.1 "${flags[@]}" 2>&1 |
               awk '$1 == "Final:" {print $5}')
        [ -n "$line" ] && break
      done ;;
  esac
  [ -n "$line" ] && record "$path" "$bytes" native "$line" || echo "# $path $bytes: no result from the native tool" >&2
  wait
}

# sparcl-pingpong over all sizes: sparcl, and the MPI ping-pong beside it.
sparcl() {  # path
  "${run[@]}" "${path_env[@]}" timeout 900 mpirun -np 2 "${mpi_flags[@]}" \
    $(for v in "${path_env[@]}"; do printf -- '-x %s ' "${v%%=*}"; done) \
    "$pingpong" -s "$sizes" -i 1000 -B 256M 2>&1 |
    awk -v p="$1" '$1 ~ /^[0-9]+$/ {print p, $1, "sparcl", $3; print p, $1, "mpi", $5}' >> "$data"
}

echo "# bench/transport/compare.sh -r $reps -s $sizes ${niceness:+-n $niceness }$paths" >&2
for rep in $(seq "$reps"); do
  for path in $paths; do
    setup "$path"
    echo "# repetition $rep: $path" >&2
    case $path in mpi-*) ;; *) for s in ${sizes//,/ }; do native "$path" "$(bytes_of "$s")"; done ;; esac
    sparcl "$path"
  done
done
[ -n "$raw" ] && { echo "path,bytes,column,one_way_us" > "$raw"; tr ' ' ',' < "$data" >> "$raw"; }

# The table: medians over repetitions; ratio = native time / sparcl time (bandwidth ratio).
python3 - "$data" "$paths" <<'PY'
import sys, statistics
from collections import defaultdict
rows = defaultdict(lambda: defaultdict(list))
for line in open(sys.argv[1]):
    p, b, col, us = line.split()
    rows[(p, int(b))][col].append(float(us))
tool = {"ofi-tcp": "fi_pingpong", "ofi-shm": "fi_pingpong", "ucx-tcp": "ucx_perftest -e",
        "ucx-sm": "ucx_perftest -e", "ucx-sm-none": "ucx_perftest", "mpi-shm": "MPI ping-pong",
        "mpi-tcp": "MPI ping-pong"}
print("%-12s %10s %16s %11s %11s %11s %11s %8s %15s %11s" % ("# path", "bytes", "native", "native_us", "native_MB/s",
      "sparcl_us", "sparcl_MB/s", "ratio", "ratio_min..max", "MPI_MB/s"))
for p in sys.argv[2].split():
    for (path, b) in sorted(k for k in rows if k[0] == p):
        r = rows[(path, b)]
        nat = r["mpi"] if path.startswith("mpi-") else r["native"]
        sp = r["sparcl"]
        if not nat or not sp:
            continue
        ratios = [n / s for n, s in zip(nat, sp)]
        mn, ms = statistics.median(nat), statistics.median(sp)
        mpi = statistics.median(r["mpi"]) if r["mpi"] else float("nan")
        print("%-12s %10d %16s %11.2f %11.1f %11.2f %11.1f %8.2f %7.2f..%-6.2f %11.1f" % (path, b, tool[path], mn, b / mn,
              ms, b / ms, statistics.median(ratios), min(ratios), max(ratios), b / mpi))
PY
