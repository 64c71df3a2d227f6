#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The ranks of an emulated cluster may run on every core this test may use:
# each emulated host sees the whole machine, so binding its ranks to "its"
# cores would put the ranks of all hosts on the same ones (and each message
# would wait for a scheduler tick while its receiver's core polls).
#   emulated_binding.sh REPO_ROOT
set -u
root=$1
expected=$(nproc)
bash "$root/tools/emulate-cluster.sh" -n 2 -r none -t 60 -- \
  sh -c "cores=\$(nproc); echo \"rank \$OMPI_COMM_WORLD_RANK may run on \$cores of $expected cores\"; test \"\$cores\" -eq $expected"
