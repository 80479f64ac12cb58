// The FFN's gated activations, as the kernels (CPU and CUDA) take them: ops knows no model.
#pragma once

namespace powerinfer2::ops {

/// The FFN's gating: out = down(act(gate x, up x)).
enum class Activation {
  swiglu,  // silu(gate) * up (standard llama)
  reglu,   // relu(gate) * up (ReLU-LLaMA, ProSparse)
  drelu,   // relu(gate) * relu(up) (TurboSparse, "bamboo")
};

/// Whether a neuron with gate and up pre-activations g and u has a non-zero output (never
/// asked of SwiGLU, whose SiLU is not exactly zero).
inline bool neuron_fires(Activation a, float g, float u) {
  return a == Activation::drelu ? g > 0.0f && u > 0.0f : g > 0.0f && u != 0.0f;
}

}  // namespace powerinfer2::ops
