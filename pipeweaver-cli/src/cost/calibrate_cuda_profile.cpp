// The CUDA calibration's grid of shapes and the DeviceProfile built from its timings; the
// measurements themselves run in calibrate_cuda.cu (or refuse, calibrate_cuda_none.cpp).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/cuda.hpp"
#include "common/errors.hpp"
#include "cost/calibrate_cuda.hpp"
#include "cost/calibrate_cuda_bench.hpp"

namespace pipeweaver::cost {

namespace {

constexpr int kHeadDim = 128;
constexpr int kMaxHeads = 32;
// S and P of one attention call ([heads, L, L] BF16, P in place) stay within this: at
// L = 8192 that is 16 heads (2 GiB), below it 32. GEMM buffers add ~0.6 GiB at most.
constexpr std::uint64_t kScoresBudgetBytes = std::uint64_t{2} << 30;
// The checks' sizes: odd, so cuBLAS takes its unaligned paths; small for the CPU reference.
constexpr int kCheckM = 67, kCheckN = 45, kCheckK = 129, kCheckSeqLen = 77, kCheckHeads = 2;

void require_device() {
  if (common::cuda::device_count() == 0)
    throw common::IoError("cuda device", "calibrate", common::cuda::no_device_message());
}

int heads_for(int seq_len) {
  const std::uint64_t per_head =
      2ull * static_cast<std::uint64_t>(seq_len) * static_cast<std::uint64_t>(seq_len);
  return static_cast<int>(std::clamp<std::uint64_t>(kScoresBudgetBytes / per_head, 1, kMaxHeads));
}

}  // namespace

DeviceProfile calibrate_cuda(const CalibrationOptions& o, const std::function<void(int, int)>& progress) {
  require_device();
  const double budget = o.seconds_per_shape > 0 ? o.seconds_per_shape : (o.quick ? 0.04 : 0.25);
  // Token counts (m) against the (k -> n) widths of a 7-8B transformer layer: attention
  // projections, qkv, FFN up (11008: the models in configs/models) and down, a wide layer.
  const std::vector<int> ms =
      o.quick ? std::vector<int>{512, 4096} : std::vector<int>{512, 1024, 2048, 4096, 8192};
  const std::vector<std::pair<int, int>> kns =
      o.quick ? std::vector<std::pair<int, int>>{{1024, 1024}, {4096, 4096}, {4096, 11008}}
              : std::vector<std::pair<int, int>>{{1024, 1024},  {4096, 4096}, {4096, 11008},
                                                 {14336, 4096}, {8192, 8192}, {4096, 12288}};
  const std::vector<int> seqs =
      o.quick ? std::vector<int>{1024, 4096} : std::vector<int>{512, 1024, 2048, 4096, 8192};
  std::vector<cuda_bench::GemmShape> gemms;
  for (const int m : ms)
    for (const auto& [k, n] : kns)
      if (o.max_dim <= 0 || std::max({m, n, k}) <= o.max_dim) gemms.push_back({m, n, k});
  std::vector<cuda_bench::AttentionShape> attn;
  for (const int len : seqs)
    if (o.max_dim <= 0 || len <= o.max_dim) attn.push_back({len, heads_for(len), kHeadDim});
  PWPI_CHECK_MSG(!gemms.empty() && !attn.empty(), "max_dim leaves no GEMM or no attention shape");
  const int total = static_cast<int>(gemms.size() + attn.size());
  int done = 0;

  const common::cuda::DeviceInfo dev = common::cuda::device_info();
  const std::string cublas = cuda_bench::cublas_library();
  const cuda_bench::Timings t = cuda_bench::run(gemms, attn, budget, [&] {
    ++done;
    if (progress) progress(done, total);
  });
  PWPI_CHECK(t.gemm.size() == gemms.size() && t.attention.size() == attn.size());
  const double gemm_err = cuda_bench::gemm_rel_error(kCheckM, kCheckN, kCheckK);
  const double attn_err = cuda_bench::attention_rel_error(kCheckSeqLen, kCheckHeads, kHeadDim);

  DeviceProfile p;
  p.device_type = "cuda";
  p.device_name = dev.name;
  p.backend = "cublas-bf16";
  p.threads = 1;
  common::Json gemm_rows = common::Json::array(), attn_rows = common::Json::array();
  std::vector<std::pair<double, double>> gemm_rate, attn_rate;  // (flops per call, FLOP/s)
  for (std::size_t i = 0; i < gemms.size(); ++i) {
    const cuda_bench::GemmShape& s = gemms[i];
    const double flops = 2.0 * s.m * s.n * s.k, sec = t.gemm[i].seconds;
    gemm_rate.emplace_back(flops, flops / sec);
    gemm_rows.push_back({{"m", s.m},
                         {"n", s.n},
                         {"k", s.k},
                         {"flops", flops},
                         {"seconds", sec},
                         {"flops_per_s", flops / sec},
                         {"calls", t.gemm[i].calls},
                         {"batches", t.gemm[i].batches}});
  }
  // 4 L^2 d FLOPs per head (the model's formula for bidirectional attention, as the CPU
  // calibration counts); the softmax's own work is not counted, its time is.
  for (std::size_t i = 0; i < attn.size(); ++i) {
    const cuda_bench::AttentionShape& a = attn[i];
    const double flops = 4.0 * a.heads * a.head_dim * static_cast<double>(a.seq_len) * a.seq_len;
    const double sec = t.attention[i].seconds;
    attn_rate.emplace_back(flops, flops / sec);
    attn_rows.push_back({{"seq_len", a.seq_len},
                         {"heads", a.heads},
                         {"head_dim", a.head_dim},
                         {"flops", flops},
                         {"seconds", sec},
                         {"flops_per_s", flops / sec},
                         {"calls", t.attention[i].calls},
                         {"batches", t.attention[i].batches}});
  }

  set_efficiencies(p, gemm_rate, attn_rate, o.peak_flops);
  p.measurements = {
      {"gemm", gemm_rows},
      {"attention", attn_rows},
      {"seconds_per_shape", budget},
      {"timing", "median seconds per call over cudaEvent-timed batches, after 2 warm-up calls"},
      {"cublas", cublas},
      {"gemm_kind", "cublasGemmEx y[m,n] = x[m,k] w[n,k]^T, bf16 in and out, f32 accumulate"},
      {"attention_kind",
       "unfused: strided-batched S = QK^T/sqrt(d), row softmax, O = PV; bf16, f32 accumulate"},
      {"device",
       {{"compute_capability", std::to_string(dev.compute_major) + "." + std::to_string(dev.compute_minor)},
        {"multiprocessors", dev.multiprocessors},
        {"total_memory_bytes", dev.total_memory_bytes}}},
      {"checks",
       {{"gemm", {{"m", kCheckM}, {"n", kCheckN}, {"k", kCheckK}, {"rel_error", gemm_err}}},
        {"attention",
         {{"seq_len", kCheckSeqLen},
          {"heads", kCheckHeads},
          {"head_dim", kHeadDim},
          {"rel_error", attn_err}}},
        {"reference", "double-precision CPU from the same bf16 inputs; relative Frobenius error"}}}};
  return p;
}

double cuda_gemm_check_rel_error(int m, int n, int k) {
  require_device();
  return cuda_bench::gemm_rel_error(m, n, k);
}

double cuda_attention_check_rel_error(int seq_len, int heads, int head_dim) {
  require_device();
  return cuda_bench::attention_rel_error(seq_len, heads, head_dim);
}

std::string cuda_cublas_library() {
  return cuda_bench::cublas_library();
}

}  // namespace pipeweaver::cost
