#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Usage: run.sh <build-dir> <source-dir>
#
# Installs the sparcl built in <build-dir> into a temporary prefix, then builds
# tests/install/consumer against that prefix twice, with CMake's
# find_package(sparcl) and with pkg-config, and runs each build on 2 ranks
# (the pkg-config one without LD_LIBRARY_PATH); checks the installed scripts.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 <build-dir> <source-dir>" >&2
  exit 2
fi
build_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
consumer_dir="$source_dir/tests/install/consumer"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sparcl-install-test.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpirun=${MPIEXEC:-mpirun}
prefix="$tmp/prefix"

# A library built with sanitizers needs consumers built with them too.
san_flags=()
sanitize=$(sed -n 's/^SPARCL_SANITIZE:[A-Z]*=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)
if [[ -n $sanitize ]]; then
  san_flags=("-fsanitize=$sanitize" -fno-omit-frame-pointer)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}  # the MPI library's own leaks are not ours
fi

die() {
  echo "install test: $*" >&2
  exit 1
}

# Runs a consumer on 2 ranks and checks that it reports success.
run_consumer() {
  local what=$1
  shift
  local out
  if ! out=$(timeout 120 "$mpirun" -np 2 "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    die "$what consumer failed"
  fi
  printf '%s\n' "$out"
  grep -qx 'consumer OK' <<<"$out" || die "$what consumer did not print 'consumer OK'"
}

# Checks that the dynamic linker resolves libsparcl from the prefix.
check_links_installed() {
  local exe=$1 lib
  lib=$(ldd "$exe" | awk '/libsparcl\.so/ { print $3 }')
  [[ -n $lib ]] || die "$exe is not linked with libsparcl"
  case $(readlink -f "$lib") in
    "$(readlink -f "$prefix")"/*) echo "$exe uses $lib" ;;
    *) die "$exe uses $lib, not the library installed in $prefix" ;;
  esac
}

echo "== install $build_dir into $prefix"
cmake --install "$build_dir" --prefix "$prefix"

pc=$(find "$prefix" -name sparcl.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n $pc ]] || die "no sparcl.pc installed under $prefix"
pcdir=$(dirname "$pc")
libdir=$(dirname "$pcdir")
[[ -e $libdir/libsparcl.so ]] || die "sparcl.pc is in $pcdir but $libdir has no libsparcl.so"
[[ -e $prefix/include/sparcl/sparcl.h && -e $prefix/include/sparcl/sparcl_mpi.h ]] ||
  die "headers not installed in $prefix/include/sparcl"
[[ -e $libdir/cmake/sparcl/sparclConfig.cmake ]] || die "no sparclConfig.cmake in $libdir/cmake/sparcl"

echo "== CMake consumer: find_package(sparcl)"
cmake -S "$consumer_dir" -B "$tmp/build-cmake" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="${san_flags[*]}" -DCMAKE_EXE_LINKER_FLAGS="${san_flags[*]}"
found=$(sed -n 's/^sparcl_DIR:[A-Z]*=//p' "$tmp/build-cmake/CMakeCache.txt")
case $(readlink -f "$found") in
  "$(readlink -f "$prefix")"/*) echo "sparcl_DIR = $found" ;;
  *) die "find_package(sparcl) found '$found', not the package installed in $prefix" ;;
esac
cmake --build "$tmp/build-cmake"
check_links_installed "$tmp/build-cmake/consumer"
run_consumer "CMake" "$tmp/build-cmake/consumer"

echo "== pkg-config consumer: $pc"
export PKG_CONFIG_PATH="$pcdir"
pc_flags=$(pkg-config --cflags --libs sparcl) || die "pkg-config --cflags --libs sparcl failed"
echo "pkg-config: $pc_flags"
# The flags must point into the prefix the package was installed to, not to
# the prefix the build was configured with.
pc_includedir=$(pkg-config --variable=includedir sparcl)
pc_libdir=$(pkg-config --variable=libdir sparcl)
[[ $(readlink -f "$pc_includedir") == $(readlink -f "$prefix/include") ]] ||
  die "sparcl.pc gives includedir=$pc_includedir after installing to $prefix (sparcl.pc is not relocatable)"
[[ $(readlink -f "$pc_libdir") == $(readlink -f "$libdir") ]] ||
  die "sparcl.pc gives libdir=$pc_libdir after installing to $prefix (sparcl.pc is not relocatable)"
# shellcheck disable=SC2086  # the flags are meant to be split
mpicc "${san_flags[@]}" -o "$tmp/consumer-pc" "$consumer_dir/consumer.c" $pc_flags
# A program linked with pkg-config's flags starts from a prefix the dynamic
# linker does not search, with no LD_LIBRARY_PATH: sparcl.pc's rpath finds it.
unset LD_LIBRARY_PATH
readelf -d "$tmp/consumer-pc" | grep -Eq '\((RUNPATH|RPATH)\)' || die "the pkg-config consumer has no rpath"
check_links_installed "$tmp/consumer-pc"
run_consumer "pkg-config" env -u LD_LIBRARY_PATH "$tmp/consumer-pc"

echo "== installed scripts"
for script in sparcl-plot sparcl-export-bladder; do
  [[ -x $prefix/bin/$script ]] || die "$script is not installed in $prefix/bin"
done
usage=$("$prefix/bin/sparcl-export-bladder" --help 2>&1 || true)  # exit status 2: usage
[[ $usage == *"usage: sparcl-export-bladder"* ]] || die "sparcl-export-bladder --help: $usage"
if /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  usage=$("$prefix/bin/sparcl-plot" --help) || die "sparcl-plot --help failed"
  [[ $usage == *--train* ]] || die "sparcl-plot --help: $usage"
fi

echo "install test passed"
