// A build without CUDA: the GPU kernels' interface, every entry point refusing with one error.
#include "common/errors.hpp"
#include "ops/cuda/cuda_ops.hpp"

namespace powerinfer2::ops::cuda {

namespace {
[[noreturn]] void no_cuda() {
  throw common::IoError("cuda device", "use the GPU",
                        "this build has no CUDA support (no CUDA compiler was found, or PWPI_CUDA=OFF)");
}
}  // namespace

bool supported_type(io::GgmlType) { return false; }

DeviceBytes::DeviceBytes(std::size_t) { no_cuda(); }
DeviceBytes::~DeviceBytes() = default;
DeviceBytes::DeviceBytes(DeviceBytes&& o) noexcept : ptr_(o.ptr_), size_(o.size_) {}
DeviceBytes& DeviceBytes::operator=(DeviceBytes&&) noexcept { return *this; }
void DeviceBytes::upload(const void*, std::size_t, std::size_t) { no_cuda(); }

std::size_t matrix_bytes(io::GgmlType, std::size_t, std::size_t) { no_cuda(); }
DeviceMatrix upload_matrix(io::GgmlType, const void*, std::size_t, std::size_t) { no_cuda(); }
std::vector<float> dequantize_on_device(io::GgmlType, const void*, std::size_t, std::size_t) { no_cuda(); }

struct GemmRunner::Impl {};
GemmRunner::GemmRunner(std::size_t, std::size_t, std::size_t, std::size_t) { no_cuda(); }
GemmRunner::~GemmRunner() = default;
std::size_t GemmRunner::scratch_bytes(std::size_t, std::size_t, std::size_t, std::size_t) { no_cuda(); }
void GemmRunner::products(std::span<const DeviceMatrix* const>, std::span<float* const>, const float*, std::size_t) {
  no_cuda();
}
void GemmRunner::ffn(const DeviceMatrix&, const DeviceMatrix&, const DeviceMatrix&, Activation, const float*,
                     std::size_t, float*) {
  no_cuda();
}

void GemmRunner::to_device(float*, const float*, std::size_t) { no_cuda(); }
void GemmRunner::to_host(float*, const float*, std::size_t) { no_cuda(); }
void GemmRunner::gemm(const DeviceMatrix&, const float*, std::size_t, float*) { no_cuda(); }
void GemmRunner::rmsnorm(const float*, const float*, std::size_t, std::size_t, float, float*) { no_cuda(); }
void GemmRunner::rope(float*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t, const float*,
                      const float*) {
  no_cuda();
}
void GemmRunner::attention(const float*, const float*, const float*, std::size_t, std::size_t, std::size_t,
                           std::size_t, std::size_t, float*) {
  no_cuda();
}
void GemmRunner::add(float*, const float*, std::size_t) { no_cuda(); }
void GemmRunner::activate(float*, const float*, std::size_t, Activation) { no_cuda(); }

struct NeuronFfn::Impl {};
NeuronFfn::NeuronFfn(const BundleLayout&, Activation, std::span<const std::size_t>, std::size_t) { no_cuda(); }
NeuronFfn::~NeuronFfn() = default;
std::size_t NeuronFfn::device_bytes(const BundleLayout&, std::span<const std::size_t>, std::size_t) { no_cuda(); }
void NeuronFfn::upload(std::size_t, std::size_t, const std::uint8_t*, std::size_t) { no_cuda(); }
void NeuronFfn::launch(std::size_t, const float*, std::size_t) { no_cuda(); }
void NeuronFfn::add_result(float*) { no_cuda(); }

}  // namespace powerinfer2::ops::cuda
