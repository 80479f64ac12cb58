#include "spec/model.hpp"

#include <cmath>
#include <sstream>

#include "common/file_io.hpp"
#include "spec/read.hpp"

namespace pipeweaver::spec {

using common::JsonView;

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

std::int64_t norm_params(NormKind kind, std::int64_t width) {
  return kind == NormKind::layernorm ? 2 * width : width;  // (scale, shift) or scale only
}

}  // namespace

const char* to_string(ModuleKind kind) {
  switch (kind) {
    case ModuleKind::encoder:
      return "encoder";
    case ModuleKind::projector:
      return "projector";
    case ModuleKind::llm:
      return "llm";
  }
  return "?";
}

// ---- LayerShape ----------------------------------------------------------------------

std::int64_t LayerShape::matmul_params() const {
  const std::int64_t attention = hidden * q_dim() + 2 * hidden * kv_dim() + q_dim() * hidden;
  const std::int64_t mlp = (gated ? 3 : 2) * hidden * ffn;
  return attention + mlp;
}

std::int64_t LayerShape::params() const {
  std::int64_t biases = 0;
  if (bias) biases = q_dim() + 2 * kv_dim() + hidden + (gated ? 2 : 1) * ffn + hidden;
  return matmul_params() + biases + 2 * norm_params(norm, hidden);
}

double LayerShape::matmul_flops_per_token() const {
  return 2.0 * static_cast<double>(matmul_params());
}

double LayerShape::attention_flops(std::int64_t seq_len) const {
  const double l = static_cast<double>(seq_len);
  const double q = static_cast<double>(q_dim());
  return causal ? 2.0 * q * l * (l + 1.0) : 4.0 * q * l * l;
}

double LayerShape::forward_flops(std::int64_t seq_len) const {
  return static_cast<double>(seq_len) * matmul_flops_per_token() + attention_flops(seq_len);
}

// ---- Module --------------------------------------------------------------------------

std::int64_t Module::layer_params() const {
  if (kind != ModuleKind::projector) return layer.params();
  std::int64_t total = 0;
  for (std::size_t i = 0; i + 1 < dims.size(); ++i)
    total += dims[i] * dims[i + 1] + (projector_bias ? dims[i + 1] : 0);
  return total;
}

std::int64_t Module::extra_params() const {
  const std::int64_t h = layer.hidden;
  switch (kind) {
    case ModuleKind::projector:
      return input_norm ? 2 * dims.front() : 0;
    case ModuleKind::llm: {
      std::int64_t total = vocab * h * (tied_embeddings ? 1 : 2);
      if (pre_norm) total += norm_params(layer.norm, h);
      if (final_norm) total += norm_params(layer.norm, h);
      return total;
    }
    case ModuleKind::encoder: {
      std::int64_t total = 0;
      if (input == EncoderInput::patch) {
        total += patch.patch_size * patch.patch_size * patch.channels * h + (patch.bias ? h : 0);
        total += patch.positions() * h + (patch.cls_token ? h : 0);
      } else {
        // Whisper: conv1 (mel_bins -> h, kernel 3), conv2 (h -> h, kernel 3, stride 2), biases.
        total += mel.mel_bins * h * 3 + h + h * h * 3 + h + mel.positions * h;
      }
      if (pre_norm) total += norm_params(layer.norm, h);
      if (final_norm) total += norm_params(layer.norm, h);
      return total;
    }
  }
  return 0;
}

double Module::layer_forward_flops(std::int64_t seq_len) const {
  if (kind == ModuleKind::projector)
    return 2.0 * static_cast<double>(seq_len) * static_cast<double>(layer_params());
  return layer.forward_flops(seq_len);
}

double Module::extra_flops_per_token() const {
  const double h = static_cast<double>(layer.hidden);
  switch (kind) {
    case ModuleKind::projector:
      return 0.0;
    case ModuleKind::llm:
      return 2.0 * h * static_cast<double>(vocab);
    case ModuleKind::encoder:
      if (input == EncoderInput::patch)
        return 2.0 * static_cast<double>(patch.patch_size * patch.patch_size * patch.channels) * h;
      // conv1 runs on `downsample` mel frames per encoder token, conv2 once.
      return static_cast<double>(mel.downsample) * 2.0 * 3.0 * static_cast<double>(mel.mel_bins) * h +
             2.0 * 3.0 * h * h;
  }
  return 0.0;
}

double Module::forward_flops(std::int64_t seq_len) const {
  return static_cast<double>(layers) * layer_forward_flops(seq_len) +
         static_cast<double>(seq_len) * extra_flops_per_token();
}

// ---- ModelSpec -----------------------------------------------------------------------

int ModelSpec::find(const std::string& module_name) const {
  for (std::size_t i = 0; i < modules.size(); ++i)
    if (modules[i].name == module_name) return static_cast<int>(i);
  return -1;
}

std::int64_t ModelSpec::params() const {
  std::int64_t total = 0;
  for (const auto& m : modules) total += m.params();
  return total;
}

namespace {

[[noreturn]] void missing_modality(const ModelSpec& model, const char* what) {
  common::Where w;
  w.item = "model " + model.name;
  throw common::InputError::message(w, std::string("the model has no ") + what + " modality",
                                    std::string("add \"") + what +
                                        "\" under \"modalities\" in the model spec, or use a trace without " +
                                        what);
}

std::int64_t visual_tokens_per_tile(const ModelSpec& model, const VisualModality& v) {
  const Module& enc = model.modules[static_cast<std::size_t>(v.encoder)];
  return enc.patch.patches() / (v.merge * v.pool);
}

void add_pass(SampleShape& shape, int module, std::int64_t seq_len, std::int64_t count) {
  if (count <= 0) return;
  for (auto& p : shape.encoder_passes) {
    if (p.module == module && p.seq_len == seq_len) {
      p.count += count;
      return;
    }
  }
  shape.encoder_passes.push_back({module, seq_len, count});
}

void add_projected(SampleShape& shape, int projector, std::int64_t tokens) {
  for (auto& [index, n] : shape.projector_tokens) {
    if (index == projector) {
      n += tokens;
      return;
    }
  }
  shape.projector_tokens.emplace_back(projector, tokens);
}

}  // namespace

std::int64_t ModelSpec::image_tokens_per_tile() const {
  if (!image.present) missing_modality(*this, "image");
  return visual_tokens_per_tile(*this, image);
}

std::int64_t ModelSpec::video_tokens_per_frame() const {
  if (!video.present) missing_modality(*this, "video");
  return visual_tokens_per_tile(*this, video);
}

AudioShape ModelSpec::audio_shape(double seconds) const {
  if (!audio.present) missing_modality(*this, "audio");
  const MelInput& mel = modules[static_cast<std::size_t>(audio.encoder)].mel;
  const double fps = static_cast<double>(mel.frames_per_second);
  const std::int64_t total_mel = std::max<std::int64_t>(1, std::llround(seconds * fps));
  const std::int64_t window_mel = std::max<std::int64_t>(1, std::llround(audio.window_seconds * fps));
  AudioShape s;
  s.windows = ceil_div(total_mel, window_mel);
  const std::int64_t last_mel = total_mel - (s.windows - 1) * window_mel;
  const std::int64_t last_actual = ceil_div(last_mel, mel.downsample);
  s.full_seq_len = ceil_div(window_mel, mel.downsample);
  s.last_seq_len = audio.pad_to_window ? s.full_seq_len : last_actual;
  // Padding costs encoder work only: the LLM gets the tokens of the real audio.
  const std::int64_t reduce = audio.merge * audio.pool;
  s.llm_tokens = (s.windows - 1) * ceil_div(s.full_seq_len, reduce) + ceil_div(last_actual, reduce);
  return s;
}

SampleShape ModelSpec::shape(const Sample& sample) const {
  SampleShape shape;
  shape.llm_tokens = sample.text_tokens;
  if (!sample.images.empty()) {
    if (!image.present) missing_modality(*this, "image");
    const Module& enc = modules[static_cast<std::size_t>(image.encoder)];
    const std::int64_t cls = enc.patch.cls_token ? 1 : 0;
    for (const ImageItem& im : sample.images) {
      const std::int64_t per_tile = im.tokens / im.tiles;
      add_pass(shape, image.encoder, per_tile * image.merge * image.pool + cls, im.tiles);
      add_projected(shape, image.projector, im.tokens);
      shape.llm_tokens += im.tokens + image.special_tokens;
    }
  }
  if (!sample.videos.empty()) {
    if (!video.present) missing_modality(*this, "video");
    const Module& enc = modules[static_cast<std::size_t>(video.encoder)];
    const std::int64_t cls = enc.patch.cls_token ? 1 : 0;
    for (const VideoItem& v : sample.videos) {
      add_pass(shape, video.encoder, v.tokens_per_frame * video.merge * video.pool + cls, v.frames);
      add_projected(shape, video.projector, v.frames * v.tokens_per_frame);
      shape.llm_tokens += v.frames * (v.tokens_per_frame + video.special_tokens);
    }
  }
  for (const AudioItem& a : sample.audios) {
    AudioShape s = audio_shape(a.seconds);
    add_pass(shape, audio.encoder, s.full_seq_len, s.windows - 1);
    add_pass(shape, audio.encoder, s.last_seq_len, 1);
    add_projected(shape, audio.projector, s.llm_tokens);
    shape.llm_tokens += s.llm_tokens + audio.special_tokens;
  }
  return shape;
}

std::int64_t ModelSpec::llm_tokens(const Sample& sample) const {
  return shape(sample).llm_tokens;
}

double ModelSpec::forward_flops(const Sample& sample) const {
  const SampleShape s = shape(sample);
  double flops = llm().forward_flops(s.llm_tokens);
  for (const EncoderPass& p : s.encoder_passes)
    flops +=
        static_cast<double>(p.count) * modules[static_cast<std::size_t>(p.module)].forward_flops(p.seq_len);
  for (const auto& [projector, tokens] : s.projector_tokens)
    flops += modules[static_cast<std::size_t>(projector)].forward_flops(tokens);
  return flops;
}

// ---- parsing -------------------------------------------------------------------------

namespace {

using detail::positive_count;
using detail::positive_count_or;

void parse_layer(const JsonView& m, Module& mod) {
  LayerShape& l = mod.layer;
  mod.layers = positive_count(m, "layers");
  l.hidden = positive_count(m, "hidden");
  l.ffn = positive_count(m, "ffn");
  l.gated = m.bool_or("gated", mod.kind == ModuleKind::llm);
  l.heads = positive_count(m, "heads");
  l.kv_heads = positive_count_or(m, "kv_heads", l.heads);
  if (l.kv_heads > l.heads || l.heads % l.kv_heads != 0)
    m.at("kv_heads")
        .fail("a divisor of heads (" + std::to_string(l.heads) + ")",
              "grouped-query attention shares each key/value head among heads / kv_heads query heads");
  if (auto hd = m.find("head_dim")) {
    l.head_dim = detail::count_value(*hd, 1);
  } else {
    if (l.hidden % l.heads != 0)
      m.at("heads").fail("a divisor of hidden (" + std::to_string(l.hidden) + ")",
                         "give \"head_dim\" when the heads do not split hidden evenly");
    l.head_dim = l.hidden / l.heads;
  }
  l.bias = m.bool_or("bias", mod.kind == ModuleKind::encoder);
  if (auto n = m.find("norm"))
    l.norm = n->as_enum({"layernorm", "rmsnorm"}) == "layernorm" ? NormKind::layernorm : NormKind::rmsnorm;
  else
    l.norm = mod.kind == ModuleKind::encoder ? NormKind::layernorm : NormKind::rmsnorm;
  l.causal = m.bool_or("causal", mod.kind == ModuleKind::llm);
  mod.pre_norm = m.bool_or("pre_norm", false);
  mod.final_norm = m.bool_or("final_norm", true);
}

void parse_encoder_input(const JsonView& in, Module& mod) {
  const std::string type = in.at("type").as_enum({"patch", "mel"});
  if (type == "patch") {
    in.allow_only({"type", "image_size", "patch_size", "channels", "cls_token", "bias"});
    mod.input = EncoderInput::patch;
    PatchInput& p = mod.patch;
    p.image_size = positive_count(in, "image_size");
    p.patch_size = positive_count(in, "patch_size");
    p.channels = positive_count_or(in, "channels", 3);
    p.cls_token = in.bool_or("cls_token", false);
    p.bias = in.bool_or("bias", false);
    if (p.image_size % p.patch_size != 0)
      in.at("image_size").fail("a multiple of patch_size (" + std::to_string(p.patch_size) + ")");
  } else {
    in.allow_only({"type", "mel_bins", "frames_per_second", "downsample", "positions"});
    mod.input = EncoderInput::mel;
    MelInput& mel = mod.mel;
    mel.mel_bins = positive_count_or(in, "mel_bins", 128);
    mel.frames_per_second = positive_count_or(in, "frames_per_second", 100);
    mel.downsample = positive_count_or(in, "downsample", 2);
    mel.positions = positive_count_or(in, "positions", 1500);
  }
}

Module parse_module(const JsonView& m) {
  if (!m.is_object()) m.fail("an object (a module)");
  Module mod;
  mod.name = m.at("name").as_string();
  if (mod.name.empty()) m.at("name").fail("a non-empty module name");
  const std::string kind = m.at("kind").as_enum({"encoder", "projector", "llm"});
  if (kind == "projector") {
    mod.kind = ModuleKind::projector;
    m.allow_only({"name", "kind", "dims", "activation", "bias", "input_norm"});
    JsonView dims = m.at("dims");
    if (!dims.is_array() || dims.size() < 2) dims.fail("an array of at least 2 widths (input, ..., output)");
    for (const JsonView& d : dims.items()) mod.dims.push_back(detail::count_value(d, 1));
    if (auto a = m.find("activation")) a->as_enum({"gelu", "relu", "silu", "none"});
    mod.projector_bias = m.bool_or("bias", true);
    mod.input_norm = m.bool_or("input_norm", false);
    mod.layers = 1;
    mod.layer.hidden = mod.dims.back();
  } else if (kind == "encoder") {
    mod.kind = ModuleKind::encoder;
    m.allow_only({"name", "kind", "layers", "hidden", "ffn", "gated", "heads", "kv_heads", "head_dim", "bias",
                  "norm", "causal", "pre_norm", "final_norm", "input"});
    parse_layer(m, mod);
    parse_encoder_input(m.at("input"), mod);
  } else {
    mod.kind = ModuleKind::llm;
    m.allow_only({"name", "kind", "layers", "hidden", "ffn", "gated", "heads", "kv_heads", "head_dim", "bias",
                  "norm", "causal", "pre_norm", "final_norm", "vocab", "tied_embeddings"});
    parse_layer(m, mod);
    mod.vocab = positive_count(m, "vocab");
    mod.tied_embeddings = m.bool_or("tied_embeddings", false);
  }
  return mod;
}

std::string names_of_kind(const ModelSpec& model, ModuleKind kind) {
  std::string out;
  for (const auto& m : model.modules) {
    if (m.kind != kind) continue;
    if (!out.empty()) out += ", ";
    out += m.name;
  }
  return out.empty() ? "none defined" : out;
}

// Resolves a module name that must be of `kind`; the error lists the valid names.
int module_ref(const ModelSpec& model, const JsonView& binding, const char* key, ModuleKind kind) {
  JsonView v = binding.at(key);
  const int index = model.find(v.as_string());
  if (index < 0 || model.modules[static_cast<std::size_t>(index)].kind != kind)
    v.fail(std::string("the name of ") + (kind == ModuleKind::encoder ? "an " : "a ") + to_string(kind) +
           " module (" + names_of_kind(model, kind) + ")");
  return index;
}

void check_projector(const ModelSpec& model, const JsonView& binding, int projector, std::int64_t in_width) {
  const Module& p = model.modules[static_cast<std::size_t>(projector)];
  if (p.dims.front() != in_width)
    binding.at("projector")
        .fail_message("projector " + p.name + " takes width " + std::to_string(p.dims.front()) +
                      ", but the encoder delivers " + std::to_string(in_width) +
                      " (its hidden size times merge)");
  if (model.llm_index >= 0 && p.dims.back() != model.llm().layer.hidden)
    binding.at("projector")
        .fail_message("projector " + p.name + " outputs width " + std::to_string(p.dims.back()) +
                      ", but the LLM's hidden size is " + std::to_string(model.llm().layer.hidden));
}

VisualModality parse_visual(const ModelSpec& model, const JsonView& b) {
  b.allow_only({"encoder", "projector", "merge", "pool", "special_tokens"});
  VisualModality v;
  v.present = true;
  v.encoder = module_ref(model, b, "encoder", ModuleKind::encoder);
  v.projector = module_ref(model, b, "projector", ModuleKind::projector);
  v.merge = positive_count_or(b, "merge", 1);
  v.pool = positive_count_or(b, "pool", 1);
  v.special_tokens = detail::nonnegative_count_or(b, "special_tokens", 0);
  const Module& enc = model.modules[static_cast<std::size_t>(v.encoder)];
  if (enc.input != EncoderInput::patch)
    b.at("encoder").fail_message("encoder " + enc.name +
                                 " takes mel frames; images and video need a patch encoder");
  if (enc.patch.patches() % (v.merge * v.pool) != 0)
    b.fail_message("merge * pool (" + std::to_string(v.merge * v.pool) + ") must divide the " +
                   std::to_string(enc.patch.patches()) + " patches of a tile");
  check_projector(model, b, v.projector, enc.layer.hidden * v.merge);
  return v;
}

AudioModality parse_audio(const ModelSpec& model, const JsonView& b) {
  b.allow_only(
      {"encoder", "projector", "merge", "pool", "special_tokens", "window_seconds", "pad_to_window"});
  AudioModality a;
  a.present = true;
  a.encoder = module_ref(model, b, "encoder", ModuleKind::encoder);
  a.projector = module_ref(model, b, "projector", ModuleKind::projector);
  a.merge = positive_count_or(b, "merge", 1);
  a.pool = positive_count_or(b, "pool", 1);
  a.special_tokens = detail::nonnegative_count_or(b, "special_tokens", 0);
  a.window_seconds = b.has("window_seconds") ? detail::positive_number(b, "window_seconds", 3600.0) : 30.0;
  a.pad_to_window = b.bool_or("pad_to_window", true);
  const Module& enc = model.modules[static_cast<std::size_t>(a.encoder)];
  if (enc.input != EncoderInput::mel)
    b.at("encoder").fail_message("encoder " + enc.name + " takes image patches; audio needs a mel encoder");
  const std::int64_t window_tokens =
      (std::llround(a.window_seconds * static_cast<double>(enc.mel.frames_per_second)) + enc.mel.downsample -
       1) /
      enc.mel.downsample;
  if (window_tokens > enc.mel.positions)
    b.at("window_seconds")
        .fail_message("a window of " + std::to_string(window_tokens) +
                      " encoder tokens exceeds the encoder's " + std::to_string(enc.mel.positions) +
                      " positions");
  check_projector(model, b, a.projector, enc.layer.hidden * a.merge);
  return a;
}

}  // namespace

ModelSpec parse_model(const common::Json& doc, const std::string& file) {
  JsonView root = common::json_root(doc, file);
  common::require_version(root, "pipeweaver model", 1, 1);
  root.allow_only({"version", "name", "notes", "dtype_bytes", "modules", "modalities"});
  ModelSpec model;
  model.name = root.string_or("name", "");
  model.notes = detail::notes_or_empty(root);
  if (auto d = root.find("dtype_bytes")) model.dtype_bytes = d->as_int(1, 8);
  JsonView modules = root.at("modules");
  if (!modules.is_array() || modules.size() == 0) modules.fail("a non-empty array of modules");
  for (const JsonView& m : modules.items()) {
    Module mod = parse_module(m);
    if (model.find(mod.name) >= 0)
      m.at("name").fail_message("duplicate module name '" + mod.name + "'", "module names must be unique");
    if (mod.kind == ModuleKind::llm) {
      if (model.llm_index >= 0) m.at("kind").fail_message("a second llm module; a model has exactly one");
      model.llm_index = static_cast<int>(model.modules.size());
    }
    model.modules.push_back(std::move(mod));
  }
  if (model.llm_index < 0) modules.fail_message("no module of kind \"llm\"; a model has exactly one");
  if (model.name.empty()) model.name = model.llm().name;
  if (auto mods = root.find("modalities")) {
    mods->allow_only({"image", "video", "audio"});
    if (auto b = mods->find("image")) model.image = parse_visual(model, *b);
    if (auto b = mods->find("video")) model.video = parse_visual(model, *b);
    if (auto b = mods->find("audio")) model.audio = parse_audio(model, *b);
  }
  return model;
}

ModelSpec load_model(const std::string& path) {
  return parse_model(common::load_json_file(path), path);
}

}  // namespace pipeweaver::spec
