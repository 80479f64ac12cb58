# CUDA is optional and automatic: enabled when PWPI_CUDA is on and a CUDA compiler is
# found (nvcc from the toolkit; its usual location is tried when it is not on PATH).
set(PWPI_HAVE_CUDA OFF)
if(PWPI_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # Ampere (A100) and Hopper (H100/H200), plus PTX for newer parts.
      set(CMAKE_CUDA_ARCHITECTURES 80-real 90-real 90-virtual)
    endif()
    enable_language(CUDA)
    # C++20 in .cu files as in the rest: nvcc 12+ takes -std=c++20, which CMake 3.25 does not
    # know yet; the targets' C++ standard (20) applies to their CUDA sources too.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    # One CUDA runtime per process: the shared one that pwpi_common links (CUDA::cudart).
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(PWPI_HAVE_CUDA ON)
    message(STATUS "pwpi: CUDA enabled (${CMAKE_CUDA_COMPILER}, archs ${CMAKE_CUDA_ARCHITECTURES})")
  else()
    message(STATUS "pwpi: no CUDA compiler found; CUDA sources are not built")
  endif()
else()
  message(STATUS "pwpi: CUDA disabled (PWPI_CUDA=OFF)")
endif()
