# SPDX-License-Identifier: BSD-3-Clause
# GPU kernels and device buffers (ml/cuda/, include/sparcl/sparcl_cuda.h),
# included by the top-level CMakeLists.txt after sparcl_objects exists.
#
#   -DSPARCL_CUDA=AUTO (default)  on when CMake finds nvcc and neither a sanitizer nor
#                                 the fuzzers (SPARCL_FUZZ) are asked for
#   -DSPARCL_CUDA=ON | OFF
#   -DCMAKE_CUDA_ARCHITECTURES=...  default "80-real;90": A100 code, and H100/H200 code
#                                   plus its PTX, which newer GPUs compile at load time
#
# The CUDA runtime is linked statically (CUDA::cudart_static): libsparcl.so
# needs no CUDA library to load, and finds the driver (libcuda.so.1) at run
# time only when a CUDA call is made.
set(SPARCL_CUDA AUTO CACHE STRING "CUDA kernels and device buffers (ON, OFF, AUTO)")
set_property(CACHE SPARCL_CUDA PROPERTY STRINGS AUTO ON OFF)

set(SPARCL_HAVE_CUDA 0)
if(SPARCL_CUDA STREQUAL "ON" AND (SPARCL_SANITIZE OR SPARCL_FUZZ))
  # The sanitizer flags go to every compiler, and nvcc takes none of them.
  message(FATAL_ERROR "SPARCL_CUDA=ON cannot be combined with SPARCL_SANITIZE or SPARCL_FUZZ: use SPARCL_CUDA=AUTO (off then) or OFF")
endif()
if(NOT SPARCL_CUDA STREQUAL "OFF" AND NOT SPARCL_SANITIZE AND NOT SPARCL_FUZZ)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(SPARCL_HAVE_CUDA 1)
  elseif(SPARCL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SPARCL_CUDA=ON but no CUDA compiler (nvcc) was found: set CMAKE_CUDA_COMPILER")
  endif()
endif()

if(SPARCL_HAVE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  target_sources(sparcl_objects PRIVATE
    ${PROJECT_SOURCE_DIR}/ml/cuda/api.cpp
    ${PROJECT_SOURCE_DIR}/ml/cuda/codec.cu
    ${PROJECT_SOURCE_DIR}/ml/cuda/compressor.cpp
    ${PROJECT_SOURCE_DIR}/ml/cuda/runtime.cpp
    ${PROJECT_SOURCE_DIR}/ml/cuda/select.cu)
  # Warnings are errors for nvcc's own diagnostics and for the host code it
  # generates (through the host compiler, without -Wpedantic/-Wshadow, which
  # the toolkit's headers and the generated stubs do not satisfy).
  set(SPARCL_CUDA_WARNINGS -Xcompiler=-Wall,-Wextra)
  if(SPARCL_WERROR)
    list(APPEND SPARCL_CUDA_WARNINGS -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(sparcl_objects PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${SPARCL_CUDA_WARNINGS}>)
  target_link_libraries(sparcl_objects PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
  target_link_libraries(sparcl PRIVATE CUDA::cudart_static ${CMAKE_DL_LIBS})
  # The targets exist already, so the CMAKE_CUDA_* defaults did not reach them.
  set_target_properties(sparcl_objects PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
    CUDA_VISIBILITY_PRESET hidden CUDA_RUNTIME_LIBRARY Static CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  set_target_properties(sparcl PROPERTIES CUDA_RUNTIME_LIBRARY Static CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  message(STATUS "sparcl: CUDA: 1 (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")
else()
  target_sources(sparcl_objects PRIVATE ${PROJECT_SOURCE_DIR}/ml/cuda/no_cuda.cpp)
  message(STATUS "sparcl: CUDA: 0")
endif()
target_sources(sparcl_objects PRIVATE ${PROJECT_SOURCE_DIR}/ml/cuda/stream_collectives.cpp)
target_compile_definitions(sparcl_objects PRIVATE SPARCL_HAVE_CUDA=${SPARCL_HAVE_CUDA})
