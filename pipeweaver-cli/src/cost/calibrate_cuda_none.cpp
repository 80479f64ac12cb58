// A build without CUDA: the CUDA calibration's measurements refuse with the reason.
#include "common/cuda.hpp"
#include "common/errors.hpp"
#include "cost/calibrate_cuda_bench.hpp"

namespace pipeweaver::cost::cuda_bench {

namespace {

[[noreturn]] void no_cuda() {
  throw common::IoError("cuda device", "calibrate", common::cuda::no_device_message());
}

}  // namespace

std::string cublas_library() {
  no_cuda();
}

Timings run(const std::vector<GemmShape>&, const std::vector<AttentionShape>&, double,
            const std::function<void()>&) {
  no_cuda();
}

double gemm_rel_error(int, int, int) {
  no_cuda();
}

double attention_rel_error(int, int, int) {
  no_cuda();
}

}  // namespace pipeweaver::cost::cuda_bench
