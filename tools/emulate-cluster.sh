#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# An emulated cluster on one machine: P "hosts" are network namespaces, each
# linked to a bridge (itself in a namespace of its own) by a veth pair whose
# two ends are shaped with tc tbf to RATE, and an mpirun command runs across
# them over TCP. Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN).
#
#   tools/emulate-cluster.sh -n 4 -r 10gbit -- build/bench/cli/sparcl-bench -b 64K -e 64M -a all
#   tools/emulate-cluster.sh -n 2 -r 1gbit --measure          # only measure a shaped link
#   tools/emulate-cluster.sh --check                          # can namespaces be made here? (0 yes, 77 no)
#
# How: a hostfile lists the namespace names; Open MPI starts its daemons on
# the other "hosts" through an rsh agent that runs
#   ip netns exec HOST unshare --uts sh -c "hostname HOST; exec <orted ...>"
# and mpirun itself runs inside the first namespace (with its hostname), so
# that every rank lives in one namespace and all traffic between hosts
# crosses the shaped links ("--mca btl self,tcp", interfaces restricted to
# the emulated subnet). Ranks are not bound to cores ("--bind-to none"): the
# hosts share the machine's cores.
#
# Safety: the only addresses used are those this script assigns inside the
# namespaces it creates (default 10.77.0.0/24); nothing is added to the
# caller's namespace (the bridge lives in a namespace of its own, and veth
# pairs are created directly inside the namespaces). The command is bounded
# in time (timeout), and an EXIT trap always kills what is left in the
# namespaces and deletes them.
#
# Exit status: the command's; 77 when network namespaces are not permitted
# here; 124 when the time limit was reached; 2 on bad usage.

# shellcheck disable=SC2015,SC2317  # "a && b || die" with die exiting; cleanup runs from a trap
set -euo pipefail

HOSTS=4
RATE=10gbit
SLOTS=1
TIMEOUT=600
BURST=""
SUBNET=10.77.0
MPIRUN_ARGS=""
BTL="self,tcp"
MEASURE=0
MEASURE_SECONDS=3
CHECK_ONLY=0
VERBOSE=0

usage() {
  cat <<'EOF'
usage: tools/emulate-cluster.sh [options] [-- PROGRAM [ARGS...]]
  -n, --hosts P          number of emulated hosts (namespaces), 2..250 (default 4)
  -r, --rate RATE        rate of every link, each direction, in tc units: 1gbit, 10gbit, 100mbit,
                         or "none" for unshaped veth links (default 10gbit)
  -s, --slots S          ranks per host: mpirun -np P*S (default 1)
  -t, --timeout SEC      wall-clock limit of the mpirun command (default 600)
      --burst SIZE       tbf bucket size (tc units; default: 2 ms at RATE, at least 128kb)
      --subnet A.B.C     /24 used inside the namespaces (default 10.77.0)
      --btl LIST         Open MPI BTLs (default self,tcp)
      --mpirun-args STR  extra mpirun arguments, split on spaces (e.g. "-x SPARCL_TIMEOUT_MS")
      --measure [SEC]    first measure TCP throughput host 1 -> host 2 for SEC seconds (default 3)
      --check            only check that network namespaces can be created here
  -v, --verbose          show the commands
  -h, --help
Without PROGRAM (and with --measure) only the measurement runs.
Exit status: the command's; 77 if network namespaces are not permitted; 124 on timeout.
EOF
}

die() { echo "emulate-cluster: $*" >&2; exit 2; }

PROGRAM=()
while (($#)); do
  case "$1" in
    -n|--hosts) HOSTS=$2; shift 2 ;;
    -r|--rate) RATE=$2; shift 2 ;;
    -s|--slots) SLOTS=$2; shift 2 ;;
    -t|--timeout) TIMEOUT=$2; shift 2 ;;
    --burst) BURST=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --btl) BTL=$2; shift 2 ;;
    --mpirun-args) MPIRUN_ARGS=$2; shift 2 ;;
    --measure)
      MEASURE=1; shift
      if (($#)) && [[ $1 =~ ^[0-9]+$ ]]; then MEASURE_SECONDS=$1; shift; fi ;;
    --check) CHECK_ONLY=1; shift ;;
    -v|--verbose) VERBOSE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; PROGRAM=("$@"); break ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
done

[[ $HOSTS =~ ^[0-9]+$ ]] && ((HOSTS >= 2 && HOSTS <= 250)) || die "--hosts must be 2..250"
[[ $SLOTS =~ ^[0-9]+$ ]] && ((SLOTS >= 1)) || die "--slots must be >= 1"
[[ $TIMEOUT =~ ^[0-9]+$ ]] && ((TIMEOUT >= 1)) || die "--timeout must be a number of seconds"
[[ $SUBNET =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "--subnet must be a private 10.x.y prefix"
[[ $RATE == none || $RATE =~ ^[0-9.]+([kmgt]?bit|[kmgt]?bps)$ ]] || die "--rate: '$RATE' is not a tc rate (e.g. 1gbit)"
if ((CHECK_ONLY == 0 && MEASURE == 0 && ${#PROGRAM[@]} == 0)); then
  usage >&2; die "nothing to run: give -- PROGRAM, --measure or --check"
fi

run() {
  ((VERBOSE)) && echo "+ $*" >&2
  "$@"
}

# Rate in bytes/s from a tc rate string (for the default burst and the report).
rate_bytes() {
  local r=$1 num unit mult
  num=${r%%[a-z]*}
  unit=${r#"$num"}
  case "$unit" in
    bit) mult=1 ;; kbit) mult=1000 ;; mbit) mult=1000000 ;; gbit) mult=1000000000 ;; tbit) mult=1000000000000 ;;
    bps) mult=8 ;; kbps) mult=8000 ;; mbps) mult=8000000 ;; gbps) mult=8000000000 ;; tbps) mult=8000000000000 ;;
    *) mult=1 ;;
  esac
  awk -v n="$num" -v m="$mult" 'BEGIN { printf "%.0f", n * m / 8 }'
}

# --- can we? ---------------------------------------------------------------
PREFIX="spc$$"
for cmd in ip tc unshare timeout; do
  command -v "$cmd" >/dev/null || { echo "emulate-cluster: '$cmd' not found (iproute2, util-linux, coreutils)" >&2; exit 77; }
done
if ((EUID != 0)); then
  echo "emulate-cluster: network namespaces need root (or CAP_NET_ADMIN and CAP_SYS_ADMIN); skipping" >&2
  exit 77
fi
if ! ip netns add "$PREFIX-probe" 2>/tmp/emulate-cluster.$$.err; then
  echo "emulate-cluster: 'ip netns add' is not permitted here: $(cat /tmp/emulate-cluster.$$.err); skipping" >&2
  rm -f /tmp/emulate-cluster.$$.err
  exit 77
fi
rm -f /tmp/emulate-cluster.$$.err
probe_ok=1
ip -n "$PREFIX-probe" link add probe0 type veth peer name probe1 2>/dev/null || probe_ok=0
if ((probe_ok)) && [[ $RATE != none ]]; then
  ip -n "$PREFIX-probe" link set probe0 up 2>/dev/null || true
  tc -n "$PREFIX-probe" qdisc add dev probe0 root tbf rate 1gbit burst 128kb latency 50ms 2>/dev/null || probe_ok=0
fi
ip netns del "$PREFIX-probe" 2>/dev/null || true
if ((!probe_ok)); then
  echo "emulate-cluster: veth pairs or tc tbf are not available in this kernel; skipping" >&2
  exit 77
fi
if ((CHECK_ONLY)); then
  echo "emulate-cluster: network namespaces, veth pairs and tc tbf work here"
  exit 0
fi
if ((${#PROGRAM[@]})); then
  command -v mpirun >/dev/null || { echo "emulate-cluster: mpirun not found" >&2; exit 2; }
fi

# --- build the cluster -----------------------------------------------------
SW="$PREFIX-sw"
NAMES=()
for ((i = 1; i <= HOSTS; i++)); do NAMES+=("$PREFIX-h$i"); done
WORK=$(mktemp -d /tmp/emulate-cluster.XXXXXX)
MADE=()
CHILD=""

cleanup() {
  local rc=$? ns pid
  trap - EXIT INT TERM HUP
  [[ -n ${CHILD:-} ]] && kill -TERM "$CHILD" 2>/dev/null || true
  # Whatever still runs inside our namespaces was started by this script.
  for ns in "${MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  sleep 0.5
  for ns in "${MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  for ns in "${MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if [[ -z $BURST && $RATE != none ]]; then
  # 2 ms worth of tokens, at least 128 KiB: more than one GSO packet (64 KiB), small enough
  # that the shaped rate holds from the first millisecond.
  b=$(rate_bytes "$RATE")
  b=$((b / 500))
  ((b < 131072)) && b=131072
  BURST=$b
fi

shape() {  # namespace device
  [[ $RATE == none ]] && return 0
  run tc -n "$1" qdisc add dev "$2" root tbf rate "$RATE" burst "$BURST" latency 50ms
}

run ip netns add "$SW"
MADE+=("$SW")
run ip -n "$SW" link set lo up
run ip -n "$SW" link add br0 type bridge
run ip -n "$SW" link set br0 up
for ((i = 1; i <= HOSTS; i++)); do
  ns=${NAMES[i - 1]}
  run ip netns add "$ns"
  MADE+=("$ns")
  run ip -n "$ns" link set lo up
  # IPv4 only inside the cluster (no IPv6 link-local addresses for MPI to try).
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
  run ip -n "$ns" link add eth0 type veth peer name "p$i" netns "$SW"
  run ip -n "$SW" link set "p$i" master br0
  run ip -n "$SW" link set "p$i" up
  run ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0
  run ip -n "$ns" link set eth0 up
  shape "$ns" eth0   # host -> switch
  shape "$SW" "p$i"  # switch -> host
done
echo "emulate-cluster: $HOSTS hosts (${NAMES[0]} .. ${NAMES[HOSTS - 1]}), $SUBNET.1-$HOSTS/24, links shaped to $RATE${BURST:+ (tbf burst $BURST bytes)}" >&2

# Wait until host 1 reaches every other host (the bridge needs a moment to forward).
for ((i = 2; i <= HOSTS; i++)); do
  ok=0
  for _ in $(seq 50); do
    # Connected, or refused: either way the path works.
    out=$(timeout 2 ip netns exec "${NAMES[0]}" bash -c "exec 3<>/dev/tcp/$SUBNET.$i/9" 2>&1) && { ok=1; break; }
    [[ $out == *refused* ]] && { ok=1; break; }
    sleep 0.1
  done
  ((ok)) || { echo "emulate-cluster: host 1 cannot reach $SUBNET.$i" >&2; exit 1; }
done

# --- measure a link --------------------------------------------------------
if ((MEASURE)); then
  PY=/usr/bin/python3
  [[ -x $PY ]] || PY=$(command -v python3)
  timeout $((MEASURE_SECONDS + 15)) ip netns exec "${NAMES[1]}" "$PY" -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('$SUBNET.2', 5201)); s.listen(1)
c, _ = s.accept(); n = 0; t0 = None
while True:
    b = c.recv(1 << 20)
    if not b: break
    if t0 is None: t0 = time.time()
    n += len(b)
dt = time.time() - t0
print('emulate-cluster: measured host 1 -> host 2: %.3f Gbit/s (%.0f MB in %.2f s; link rate $RATE)' % (n * 8 / dt / 1e9, n / 1e6, dt))
" &
  server=$!
  sleep 0.5
  timeout $((MEASURE_SECONDS + 10)) ip netns exec "${NAMES[0]}" "$PY" -c "
import socket, time
c = socket.create_connection(('$SUBNET.2', 5201)); buf = b'x' * (1 << 20); end = time.time() + $MEASURE_SECONDS
while time.time() < end: c.sendall(buf)
c.close()
"
  wait "$server"
fi

((${#PROGRAM[@]})) || exit 0

# --- run mpirun across the hosts -------------------------------------------
for ns in "${NAMES[@]}"; do echo "$ns slots=$SLOTS"; done >"$WORK/hostfile"
cat >"$WORK/agent" <<'EOF'
#!/bin/sh
# rsh agent: "agent HOST COMMAND..." runs COMMAND in namespace HOST, with HOST as hostname.
host=$1
shift
exec ip netns exec "$host" unshare --uts sh -c "hostname $host; $*"
EOF
chmod +x "$WORK/agent"
{
  echo "#!/bin/bash"
  echo "hostname ${NAMES[0]}"
  if ((EUID == 0)); then echo "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"; fi
  printf 'exec mpirun -np %d --hostfile %q --mca plm_rsh_agent %q --mca plm_rsh_no_tree_spawn 1' \
    $((HOSTS * SLOTS)) "$WORK/hostfile" "$WORK/agent"
  printf ' --mca btl %q --mca btl_tcp_if_include %q --mca oob_tcp_if_include %q' "$BTL" "$SUBNET.0/24" "$SUBNET.0/24"
  # Every emulated host sees all the machine's cores and would bind its first
  # rank to core 0, its second to core 1...: the ranks of all hosts would
  # share the same cores, and a rank polling for a message would hold the
  # core its peer needs for a whole scheduler tick (4 ms per message).
  printf ' --bind-to none'
  # shellcheck disable=SC2086
  for a in $MPIRUN_ARGS; do printf ' %q' "$a"; done
  for a in "${PROGRAM[@]}"; do printf ' %q' "$a"; done
  echo
} >"$WORK/run.sh"
((VERBOSE)) && sed 's/^/+ /' "$WORK/run.sh" >&2
echo "emulate-cluster: running $((HOSTS * SLOTS)) ranks on $HOSTS hosts (limit ${TIMEOUT} s): ${PROGRAM[*]}" >&2
# In the background, so that a signal to this script runs its trap at once (not after the command).
timeout -k 10 "$TIMEOUT" ip netns exec "${NAMES[0]}" unshare --uts bash "$WORK/run.sh" &
CHILD=$!
set +e
wait "$CHILD"
rc=$?
set -e
CHILD=""
if ((rc == 124 || rc == 137)); then
  echo "emulate-cluster: the command did not finish within ${TIMEOUT} s" >&2
  rc=124
fi
exit "$rc"
