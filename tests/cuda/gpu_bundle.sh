#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# Packs what the GPU checks need into one folder, for a GPU machine that has
# the CUDA driver but not this project's build dependencies (MPI, libfabric,
# UCX): the kernel tests, the benchmark, libsparcl.so, and every shared
# library they load that is not part of the C runtime. On the GPU machine,
# `DIR/run.sh` runs the kernel tests, then the benchmark, and writes their
# output to DIR/out/ (or to $OUT when set).
#
#   tests/cuda/gpu_bundle.sh BUILD_DIR DIR
#
# BUILD_DIR is a CUDA build (-DSPARCL_CUDA=ON or AUTO with nvcc) with tests
# and benchmarks; -DCMAKE_CUDA_ARCHITECTURES=90 is enough for an H100/H200.
# The binaries are built here, so the GPU machine needs the same processor
# architecture and a C library at least as new as this machine's.
set -euo pipefail
build=${1:?usage: gpu_bundle.sh BUILD_DIR DIR}
dir=${2:?usage: gpu_bundle.sh BUILD_DIR DIR}
mkdir -p "$dir/lib"
bins=("$build/tests/cuda/sparcl_cuda_tests" "$build/bench/cuda/sparcl-bench-cuda")
for b in "${bins[@]}"; do
  [[ -x "$b" ]] || { echo "gpu_bundle: $b is missing: build it first" >&2; exit 1; }
  cp "$b" "$dir/"
  # Shared libraries by path, except the C runtime's own (the GPU machine's are used).
  ldd "$b" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*) ;;
      *) cp -L "$lib" "$dir/lib/" ;;
    esac
  done
done
cat > "$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The GPU checks of sparcl (made by tests/cuda/gpu_bundle.sh).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SPARCL_TEST_REQUIRE_GPU=1  # a GPU test that skips here fails (e.g. a driver older than CUDA 13)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/device.txt" 2>&1
"$here/sparcl_cuda_tests" --gtest_filter='Gpu*' 2>&1 | tee "$out/gpu-tests.txt"
tests=${PIPESTATUS[0]}
"$here/sparcl-bench-cuda" -n 26 -i 20 2>&1 | tee "$out/bench-cuda.txt"
exit "$tests"
EOF
chmod +x "$dir/run.sh"
du -sh "$dir"
