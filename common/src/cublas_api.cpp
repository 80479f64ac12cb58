#include "common/cublas_api.hpp"

#include <dlfcn.h>

#include <cstring>
#include <type_traits>

#ifndef PWPI_CUBLAS_DIR
#define PWPI_CUBLAS_DIR ""
#endif

namespace common::cuda {

namespace {

// Each pointer type checked against the header's declaration (static_cast picks the exact
// overload or fails to compile; unevaluated, so nothing is linked).
static_assert(std::is_same_v<decltype(static_cast<CublasCreateFn>(&cublasCreate_v2)), CublasCreateFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasDestroyFn>(&cublasDestroy_v2)), CublasDestroyFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasSetStreamFn>(&cublasSetStream_v2)), CublasSetStreamFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasStatusStringFn>(&cublasGetStatusString)), CublasStatusStringFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasGetPropertyFn>(&cublasGetProperty)), CublasGetPropertyFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasGemmExFn>(&cublasGemmEx)), CublasGemmExFn>);
static_assert(std::is_same_v<decltype(static_cast<CublasGemmStridedBatchedExFn>(&cublasGemmStridedBatchedEx)),
                             CublasGemmStridedBatchedExFn>);

// The soname this build was compiled against: through the executable's RUNPATH, the loader
// path and cache, then the toolkit's library directory of the build.
CublasApi load_cublas() {
  CublasApi api;
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  const auto last_error = [] {
    const char* e = dlerror();
    return std::string(e ? e : "unknown dlopen error");
  };
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string why = lib ? "" : last_error();
  api.library = soname;
  if (!lib && std::strlen(PWPI_CUBLAS_DIR) > 0) {
    api.library = std::string(PWPI_CUBLAS_DIR) + "/" + soname;
    lib = dlopen(api.library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) why += "; " + last_error();
  }
  if (!lib) throw common::IoError(soname, "load cuBLAS", why);
  // Kept open for the life of the process.
  const auto sym = [&](const char* name) {
    void* p = dlsym(lib, name);
    if (!p) throw common::IoError(api.library, std::string("find ") + name, "no such symbol");
    return p;
  };
  api.create = reinterpret_cast<CublasCreateFn>(sym("cublasCreate_v2"));
  api.destroy = reinterpret_cast<CublasDestroyFn>(sym("cublasDestroy_v2"));
  api.set_stream = reinterpret_cast<CublasSetStreamFn>(sym("cublasSetStream_v2"));
  api.status_string = reinterpret_cast<CublasStatusStringFn>(sym("cublasGetStatusString"));
  api.get_property = reinterpret_cast<CublasGetPropertyFn>(sym("cublasGetProperty"));
  api.gemm_ex = reinterpret_cast<CublasGemmExFn>(sym("cublasGemmEx"));
  api.gemm_strided_batched_ex = reinterpret_cast<CublasGemmStridedBatchedExFn>(sym("cublasGemmStridedBatchedEx"));
  return api;
}

}  // namespace

const CublasApi& cublas() {
  static const CublasApi api = load_cublas();
  return api;
}

std::string cublas_description() {
  const CublasApi& api = cublas();
  int major = 0, minor = 0, patch = 0;
  PWPI_CUBLAS_CHECK(api.get_property(MAJOR_VERSION, &major));
  PWPI_CUBLAS_CHECK(api.get_property(MINOR_VERSION, &minor));
  PWPI_CUBLAS_CHECK(api.get_property(PATCH_LEVEL, &patch));
  return api.library + " (cuBLAS " + std::to_string(major) + "." + std::to_string(minor) + "." +
         std::to_string(patch) + ")";
}

}  // namespace common::cuda
