// The model spec: a large multimodal model as modules (modality encoders, projectors, one
// LLM), each a stack of identical transformer layers, plus how each modality's samples
// become encoder sequences and LLM tokens. Parameter counts and forward FLOPs derive from
// the shapes; the formulas are in docs/pipeweaver.md ("Derived quantities").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/json_io.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::spec {

enum class ModuleKind { encoder, projector, llm };
enum class NormKind { layernorm, rmsnorm };
enum class EncoderInput { patch, mel };

const char* to_string(ModuleKind kind);

/// One transformer layer; every layer of a module has this shape.
struct LayerShape {
  std::int64_t hidden = 0;    // model width h
  std::int64_t ffn = 0;       // MLP inner width
  bool gated = false;         // SwiGLU (gate, up, down: 3 matrices) or GELU MLP (up, down: 2)
  std::int64_t heads = 0;     // query heads
  std::int64_t kv_heads = 0;  // key/value heads (grouped-query attention when < heads)
  std::int64_t head_dim = 0;  // hidden / heads unless given
  bool bias = false;          // every linear layer has a bias
  NormKind norm = NormKind::rmsnorm;
  bool causal = false;  // causal (LLM) or bidirectional (encoder) attention

  std::int64_t q_dim() const { return heads * head_dim; }
  std::int64_t kv_dim() const { return kv_heads * head_dim; }
  /// Weights of the GEMMs (Q, K, V, O projections and the MLP matrices).
  std::int64_t matmul_params() const;
  /// All weights of one layer: matmul_params + biases + the two norms.
  std::int64_t params() const;
  /// GEMM FLOPs per token, forward: 2 * matmul_params.
  double matmul_flops_per_token() const;
  /// Attention scores (Q K^T) and context (P V) for one sequence of seq_len tokens,
  /// forward: 4 * q_dim * seq_len^2, or 2 * q_dim * seq_len * (seq_len + 1) when causal
  /// (only the lower triangle is computed, as FlashAttention does).
  double attention_flops(std::int64_t seq_len) const;
  /// One layer on one sequence, forward: seq_len * matmul_flops_per_token + attention.
  double forward_flops(std::int64_t seq_len) const;
};

/// A ViT's patch embedding: images of image_size^2 pixels cut into patch_size^2 patches.
struct PatchInput {
  std::int64_t image_size = 0;  // pixels per side of one tile / frame
  std::int64_t patch_size = 0;  // pixels per side of one patch
  std::int64_t channels = 3;
  bool cls_token = false;  // a class token joins every encoder sequence
  bool bias = false;       // the patch projection has a bias

  std::int64_t patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  std::int64_t positions() const { return patches() + (cls_token ? 1 : 0); }
};

/// An audio encoder's front end (Whisper): mel frames -> convolutions -> encoder tokens.
struct MelInput {
  std::int64_t mel_bins = 128;
  std::int64_t frames_per_second = 100;  // mel frames per second of audio
  std::int64_t downsample = 2;           // mel frames per encoder token (stride of conv2)
  std::int64_t positions = 1500;         // encoder positions (30 s in Whisper)
};

/// One module. Encoders and the LLM are `layers` identical transformer layers plus their
/// embeddings; a projector is one MLP over `dims`.
struct Module {
  std::string name;
  ModuleKind kind = ModuleKind::llm;
  std::int64_t layers = 0;  // transformer layers (1 for a projector: the whole MLP)
  LayerShape layer;         // encoder, llm
  bool pre_norm = false;    // a norm before the first layer (CLIP's pre_layrnorm)
  bool final_norm = true;   // a norm after the last layer
  // encoder
  EncoderInput input = EncoderInput::patch;
  PatchInput patch;
  MelInput mel;
  // llm
  std::int64_t vocab = 0;
  bool tied_embeddings = false;  // the LM head reuses the token embedding
  // projector: an MLP dims[0] -> dims[1] -> ... -> dims.back()
  std::vector<std::int64_t> dims;
  bool projector_bias = true;
  bool input_norm = false;  // a LayerNorm on the projector's input (InternVL)

  /// Weights of one layer (encoder, llm) or of the whole MLP (projector).
  std::int64_t layer_params() const;
  /// Weights outside the layers: embeddings, positions, norms around the stack, LM head.
  std::int64_t extra_params() const;
  std::int64_t params() const { return layers * layer_params() + extra_params(); }

  /// Forward FLOPs of one layer on one sequence of seq_len tokens (a projector has no
  /// attention: its FLOPs are linear in seq_len).
  double layer_forward_flops(std::int64_t seq_len) const;
  /// Forward FLOPs per token outside the layers: the LM head (2 h vocab), the patch
  /// embedding (2 patch^2 channels h) or the mel convolutions.
  double extra_flops_per_token() const;
  /// The whole module on one sequence: layers * layer_forward_flops + extras.
  double forward_flops(std::int64_t seq_len) const;
};

/// How images or video frames reach the LLM: encoder -> merge -> pool -> projector.
struct VisualModality {
  bool present = false;
  int encoder = -1;  // index into ModelSpec::modules
  int projector = -1;
  std::int64_t merge = 1;           // neighbouring tokens concatenated (InternVL pixel shuffle: 4)
  std::int64_t pool = 1;            // neighbouring tokens averaged (LLaVA-NeXT-Video 2x2: 4)
  std::int64_t special_tokens = 0;  // extra LLM tokens per image / per video frame (<img>, </img>)
};

/// How audio reaches the LLM: mel frames -> encoder (in windows) -> merge/pool -> projector.
struct AudioModality {
  bool present = false;
  int encoder = -1;
  int projector = -1;
  std::int64_t merge = 1;
  std::int64_t pool = 1;            // Qwen2-Audio: average pooling of 2
  std::int64_t special_tokens = 0;  // per clip
  double window_seconds = 30.0;     // the encoder sees at most this much audio per sequence
  bool pad_to_window = true;        // Whisper pads every window to full length
};

/// `count` identical encoder sequences of `seq_len` tokens on module `module`.
struct EncoderPass {
  int module = -1;
  std::int64_t seq_len = 0;
  std::int64_t count = 0;
};

/// What one sample costs the model: its LLM sequence and its encoder/projector work.
struct SampleShape {
  std::int64_t llm_tokens = 0;                                 // text + media + special tokens
  std::vector<EncoderPass> encoder_passes;                     // one entry per media item kind and size
  std::vector<std::pair<int, std::int64_t>> projector_tokens;  // (projector, tokens)
};

/// One audio clip after the encoder's windows: sequence lengths and LLM tokens.
struct AudioShape {
  std::int64_t windows = 0;
  std::int64_t full_seq_len = 0;  // encoder tokens of a full (or padded) window
  std::int64_t last_seq_len = 0;  // encoder tokens of the last window
  std::int64_t llm_tokens = 0;    // LLM tokens (special tokens excluded)
};

struct ModelSpec {
  std::string name;
  std::string notes;
  std::int64_t dtype_bytes = 2;  // bytes per parameter (bf16: 2)
  std::vector<Module> modules;   // in the order given; exactly one llm
  int llm_index = -1;
  VisualModality image;
  VisualModality video;
  AudioModality audio;

  const Module& llm() const { return modules[static_cast<std::size_t>(llm_index)]; }
  /// Index of the module named `name`, or -1.
  int find(const std::string& module_name) const;
  std::int64_t params() const;

  /// LLM tokens contributed by one image tile / video frame (special tokens excluded):
  /// patches / (merge * pool). Requires the modality.
  std::int64_t image_tokens_per_tile() const;
  std::int64_t video_tokens_per_frame() const;
  AudioShape audio_shape(double seconds) const;

  /// How `sample` maps onto the model. InputError (naming this model) when the sample has
  /// a modality the model lacks.
  SampleShape shape(const Sample& sample) const;
  std::int64_t llm_tokens(const Sample& sample) const;
  /// Forward FLOPs of one sample: its encoder sequences, projected tokens and its LLM
  /// sequence (one sequence per sample, as in packing with per-sample attention masks).
  double forward_flops(const Sample& sample) const;
};

/// Parses and validates a model spec; errors name `file` and the JSON pointer.
ModelSpec parse_model(const common::Json& doc, const std::string& file);
/// Reads `path` (IoError when it cannot) and parses it.
ModelSpec load_model(const std::string& path);

}  // namespace pipeweaver::spec
