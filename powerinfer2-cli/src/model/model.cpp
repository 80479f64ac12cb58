#include "model/model.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <new>
#include <utility>
#include <vector>

#include "io/pi2_format.hpp"
#include "ops/packed.hpp"

namespace powerinfer2::model {

WeightStore::WeightStore(std::size_t bytes) {
  if (bytes == 0) return;
  // Start on a 2 MiB boundary (a huge page can only back an aligned 2 MiB range): map 2 MiB
  // more, then unmap the ends.
  constexpr std::size_t k2MiB = std::size_t{1} << 21;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  size_ = (bytes + page - 1) / page * page;
  void* p = ::mmap(nullptr, size_ + k2MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto raw = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t start = (raw + k2MiB - 1) / k2MiB * k2MiB;
  if (start > raw) ::munmap(p, start - raw);
  if (const std::size_t tail = raw + size_ + k2MiB - (start + size_); tail > 0) ::munmap(reinterpret_cast<void*>(start + size_), tail);
  data_ = reinterpret_cast<std::uint8_t*>(start);
  ::madvise(data_, size_, MADV_HUGEPAGE);  // advice only: 4 KiB pages work too
}

WeightStore::~WeightStore() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

WeightStore::WeightStore(WeightStore&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

WeightStore& WeightStore::operator=(WeightStore&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

namespace {

bool packs(const ops::WeightMatrix& m) {
  return m.layout == ops::WeightLayout::gguf && (m.type == io::GgmlType::Q8_0 || m.type == io::GgmlType::Q4_0);
}

// Lets the kernel take back the pages of [p, p + bytes) in the read-only private file
// mapping: nothing was written there, so a later read faults the file's bytes back in.
void drop_mapped_pages(const void* p, std::size_t bytes) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(p) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes + page - 1) / page * page;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);  // advice only: failure is harmless
}

// Repacks the Q8_0 / Q4_0 matrices to rows16 in one store (transparent huge pages where the
// kernel gives them: fewer TLB misses when decoding streams the whole model).
// `file_bytes`: the bytes of the file's matrices that moved there.
WeightStore repack(model::ModelWeights& w, common::ThreadPool* pool, std::uint64_t& file_bytes) {
  std::vector<ops::WeightMatrix*> mats;
  for (model::LayerWeights& L : w.layers)
    for (ops::WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
      if (packs(*m)) mats.push_back(m);
  if (packs(w.output)) mats.push_back(&w.output);
  std::size_t total = 0;
  for (const ops::WeightMatrix* m : mats) total += (ops::rows16_bytes(m->type, m->n_rows, m->n_cols) + 63) / 64 * 64;
  if (total == 0) return {};
  WeightStore out(total);
  std::size_t off = 0;
  for (ops::WeightMatrix* m : mats) {
    ops::pack_rows16(*m, out.data() + off, pool);
    drop_mapped_pages(m->data, m->n_rows * m->row_bytes());
    file_bytes += m->n_rows * m->row_bytes();
    m->data = out.data() + off;
    m->layout = ops::WeightLayout::rows16;
    off += (ops::rows16_bytes(m->type, m->n_rows, m->n_cols) + 63) / 64 * 64;
  }
  return out;
}

}  // namespace

Model::Model(const std::string& path, common::ThreadPool* pool, bool repack_weights)
    : file(path),
      config(model::load_config(file)),
      weights(model::load_weights(file, config, /*with_ffn=*/!io::is_pi2(file))),
      tokenizer(model::Tokenizer::from_gguf(file)) {
  if (io::is_pi2(file)) pi2 = load_pi2(file, config);
  if (repack_weights) packed = repack(weights, pool, repacked_file_bytes);
}

std::uint64_t Model::resident_weight_bytes() const {
  std::uint64_t bytes = 0;
  for (const io::GgufTensorInfo& t : file.tensor_infos())
    if (!io::is_pi2_bundle_tensor(t.name)) bytes += t.size_bytes;
  return bytes - repacked_file_bytes + packed.size_bytes();
}

}  // namespace powerinfer2::model
