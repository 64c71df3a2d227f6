# SPDX-License-Identifier: BSD-3-Clause
# Gradient compression (sparsifiers, error feedback, and the C API of
# include/sparcl/compress.h), compiled into the sparcl library. The value and
# index codecs they use are the core's (src/codec/).
set(SPARCL_COMPRESS_SOURCES
  ${PROJECT_SOURCE_DIR}/ml/compress/select.cpp
  ${PROJECT_SOURCE_DIR}/ml/compress/compressor.cpp
  ${PROJECT_SOURCE_DIR}/ml/compress/api.cpp)
# The kernels never read floating-point exception flags; without
# -fno-trapping-math GCC refuses to vectorise loops that compute both sides
# of a floating-point select (the codecs' branch-free conversions).
set_source_files_properties(
  ${PROJECT_SOURCE_DIR}/ml/compress/compressor.cpp
  PROPERTIES COMPILE_OPTIONS -fno-trapping-math)
