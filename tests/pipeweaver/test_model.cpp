// The model spec: the shipped configs against public parameter counts, token-count
// formulas, FLOPs against the closed forms, and every validation error path.
#include <filesystem>

#include "spec/model.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver::spec;
using pwtest::config;
using pwtest::error_of;

namespace {

const Module& module(const ModelSpec& m, const char* name) {
  const int i = m.find(name);
  REQUIRE(i >= 0);
  return m.modules[static_cast<std::size_t>(i)];
}

// A small valid model the error tests modify one field at a time.
common::Json base_model() {
  return common::Json::parse(R"({
    "version": 1, "name": "tiny",
    "modules": [
      {"name": "vit", "kind": "encoder", "layers": 2, "hidden": 64, "ffn": 256, "heads": 4,
       "input": {"type": "patch", "image_size": 56, "patch_size": 14, "cls_token": true}},
      {"name": "proj", "kind": "projector", "dims": [64, 128]},
      {"name": "llm", "kind": "llm", "layers": 2, "hidden": 128, "ffn": 344, "heads": 4, "kv_heads": 2, "vocab": 1000}
    ],
    "modalities": {"image": {"encoder": "vit", "projector": "proj"}}
  })");
}

std::string model_error(const common::Json& doc) {
  return error_of([&] { parse_model(doc, "m.json"); });
}

}  // namespace

TEST_CASE("pipeweaver model: every shipped model config loads", "[unit]") {
  int n = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::source_dir() / "configs" / "models")) {
    INFO(entry.path());
    const ModelSpec m = load_model(entry.path().string());
    CHECK(m.llm_index >= 0);
    CHECK(m.params() > 1'000'000'000);
    CHECK(!m.notes.empty());
    ++n;
  }
  CHECK(n >= 3);
}

TEST_CASE("pipeweaver model: LLaVA-1.5-7B parameter counts match the public figures", "[unit]") {
  const ModelSpec m = load_model(config("models/llava-7b.json"));
  // HF liuhaotian/llava-v1.5-7b: 7,062,902,784 parameters; its LLM is LLaMA-2-7B's shape
  // (6,738,415,616); CLIP ViT-L/14-336 vision tower 0.30B; projector 1024*4096+4096+4096^2+4096.
  CHECK(module(m, "llm").params() == 6'738'415'616);
  CHECK(static_cast<double>(module(m, "vision").params()) == Approx(0.3035e9).epsilon(0.01));
  CHECK(module(m, "mm_projector").params() == 20'979'712);
  CHECK(static_cast<double>(m.params()) == Approx(7.06e9).epsilon(0.01));
}

TEST_CASE("pipeweaver model: the 37B config is a ~5.5B ViT plus a ~32.5B LLM", "[unit]") {
  const ModelSpec m = load_model(config("models/lmm-37b.json"));
  // InternViT-6B-448px-V1.5: 5.54B (45 layers); LLaMA-30B ("33B"): 32,528,943,616.
  CHECK(static_cast<double>(module(m, "vision").params()) == Approx(5.54e9).epsilon(0.02));
  CHECK(module(m, "llm").params() == 32'528'943'616);
  CHECK(static_cast<double>(m.params()) == Approx(38.2e9).epsilon(0.02));
}

TEST_CASE("pipeweaver model: the audio config's Whisper-large-v3 encoder is ~0.64B", "[unit]") {
  const ModelSpec m = load_model(config("models/audio-vision-7b.json"));
  // Whisper large-v3: 1.55B parameters, about 0.64B of them in the encoder.
  CHECK(static_cast<double>(module(m, "audio").params()) == Approx(0.637e9).epsilon(0.02));
  CHECK(module(m, "llm").params() == 6'738'415'616);
}

TEST_CASE("pipeweaver model: tokens per image, frame and audio second", "[unit]") {
  const ModelSpec llava = load_model(config("models/llava-7b.json"));
  CHECK(llava.image_tokens_per_tile() == 576);   // (336 / 14)^2
  CHECK(llava.video_tokens_per_frame() == 144);  // 576 pooled 2x2
  Sample s;
  s.text_tokens = 100;
  s.images.push_back({576, 1});
  SampleShape shape = llava.shape(s);
  CHECK(shape.llm_tokens == 676);
  REQUIRE(shape.encoder_passes.size() == 1);
  CHECK(shape.encoder_passes[0].seq_len == 577);  // + the class token inside the ViT
  CHECK(shape.encoder_passes[0].count == 1);

  Sample v;
  v.text_tokens = 10;
  v.videos.push_back({8, 144});
  shape = llava.shape(v);
  CHECK(shape.llm_tokens == 10 + 8 * 144);
  REQUIRE(shape.encoder_passes.size() == 1);
  CHECK(shape.encoder_passes[0].seq_len == 577);  // the ViT sees all 576 patches of a frame
  CHECK(shape.encoder_passes[0].count == 8);

  const ModelSpec big = load_model(config("models/lmm-37b.json"));
  CHECK(big.image_tokens_per_tile() == 256);  // (448 / 14)^2 / 4 (pixel shuffle)
  Sample tiles;
  tiles.text_tokens = 1;
  tiles.images.push_back({5 * 256, 5});
  shape = big.shape(tiles);
  CHECK(shape.llm_tokens == 1 + 1280 + 2);  // + <img> </img>
  CHECK(shape.encoder_passes[0].seq_len == 1025);
  CHECK(shape.encoder_passes[0].count == 5);

  const ModelSpec audio = load_model(config("models/audio-vision-7b.json"));
  AudioShape a = audio.audio_shape(10.0);  // 1000 mel frames -> 500 encoder tokens -> 250
  CHECK(a.windows == 1);
  CHECK(a.full_seq_len == 1500);  // padded to 30 s
  CHECK(a.last_seq_len == 1500);
  CHECK(a.llm_tokens == 250);
  a = audio.audio_shape(45.0);  // a full 30 s window and a 15 s one
  CHECK(a.windows == 2);
  CHECK(a.llm_tokens == 750 + 375);
  ModelSpec unpadded = audio;
  unpadded.audio.pad_to_window = false;
  CHECK(unpadded.audio_shape(45.0).last_seq_len == 750);
  CHECK(unpadded.audio_shape(0.013).llm_tokens == 1);
  Sample clip;
  clip.text_tokens = 20;
  clip.audios.push_back({10.0});
  CHECK(audio.llm_tokens(clip) == 20 + 250 + 2);
}

TEST_CASE("pipeweaver model: layer FLOPs follow the closed forms", "[unit]") {
  // Non-gated MLP of 4h, full attention: 24 T h^2 + 4 h T^2 (forward).
  LayerShape l;
  l.hidden = 1024;
  l.ffn = 4096;
  l.heads = 16;
  l.kv_heads = 16;
  l.head_dim = 64;
  const double h = 1024, t = 577;
  CHECK(l.forward_flops(577) == 24 * t * h * h + 4 * h * t * t);
  // A gated MLP costs 1.5x the MLP part: 8 T h^2 (attention) + 24 T h^2 (MLP).
  l.gated = true;
  CHECK(l.matmul_flops_per_token() == 32 * h * h);
  // Causal attention computes the lower triangle: 2 q_dim L (L + 1).
  l.causal = true;
  CHECK(l.attention_flops(1000) == 2.0 * 1024 * 1000 * 1001);
  // Grouped-query attention: K and V shrink to kv_heads * head_dim.
  l.kv_heads = 4;
  CHECK(l.matmul_params() == 2 * 1024 * 1024 + 2 * 1024 * 256 + 3 * 1024 * 4096);
}

TEST_CASE("pipeweaver model: a sample's FLOPs add up its modules", "[unit]") {
  const ModelSpec m = load_model(config("models/llava-7b.json"));
  Sample s;
  s.text_tokens = 100;
  s.images.push_back({576, 1});
  const double expected = module(m, "llm").forward_flops(676) + module(m, "vision").forward_flops(577) +
                          module(m, "mm_projector").forward_flops(576);
  CHECK(m.forward_flops(s) == Approx(expected).epsilon(1e-12));
  // Per token the LLM costs 2 FLOPs per weight except the embedding table (a lookup):
  // 2 * (6.74e9 - 32000 * 4096), plus attention over one position.
  const Module& llm = module(m, "llm");
  CHECK(llm.forward_flops(1) == Approx(2.0 * (6'738'415'616 - 32000 * 4096)).epsilon(0.001));
  Sample text_only;
  text_only.text_tokens = 1;
  CHECK(m.shape(text_only).encoder_passes.empty());
}

TEST_CASE("pipeweaver model: a sample with a modality the model lacks is an error", "[unit]") {
  const ModelSpec m = load_model(config("models/llava-7b.json"));
  Sample s;
  s.text_tokens = 1;
  s.audios.push_back({3.0});
  CHECK(error_of([&] { m.shape(s); }) == "model llava-1.5-7b: the model has no audio modality");
}

TEST_CASE("pipeweaver model: version errors", "[unit]") {
  common::Json doc = base_model();
  doc.erase("version");
  CHECK(model_error(doc) ==
        "m.json: /version: missing required member (every pipeweaver model file declares its format version; "
        "this build reads version 1)");
  doc["version"] = 2;
  CHECK(model_error(doc) == "m.json: /version: expected a supported pipeweaver model version (1), got 2");
  doc["version"] = "1";
  CHECK(model_error(doc) == "m.json: /version: expected an integer format version, got the string \"1\"");
}

TEST_CASE("pipeweaver model: field errors name the JSON pointer", "[unit]") {
  common::Json doc = base_model();
  doc["modules"][0]["layers"] = -3;
  CHECK(model_error(doc) == "m.json: /modules/0/layers: expected a positive integer, got -3");

  doc = base_model();
  doc["modules"][2]["hidden"] = "4096";
  CHECK(model_error(doc) ==
        "m.json: /modules/2/hidden: expected a positive integer, got the string \"4096\"");

  doc = base_model();
  doc["modules"][0]["hiden"] = 64;
  CHECK(model_error(doc) ==
        "m.json: /modules/0/hiden: unknown member; expected one of: name, kind, layers, hidden, ffn, gated, "
        "heads, "
        "kv_heads, head_dim, bias, norm, causal, pre_norm, final_norm, input");

  doc = base_model();
  doc["modules"][2]["layers"] = 5'000'000'000LL;
  CHECK(model_error(doc) ==
        "m.json: /modules/2/layers: expected an integer no larger than 1000000000, got 5000000000");

  doc = base_model();
  doc["modules"][2].erase("vocab");
  CHECK(model_error(doc) == "m.json: /modules/2/vocab: missing required member");

  doc = base_model();
  doc["modules"][1]["kind"] = "adapter";
  CHECK(model_error(doc) ==
        "m.json: /modules/1/kind: expected one of encoder, projector, llm, got the string \"adapter\"");

  doc = base_model();
  doc["dtype_bytes"] = 16;
  CHECK(model_error(doc) == "m.json: /dtype_bytes: expected an integer in [1, 8], got 16");
}

TEST_CASE("pipeweaver model: shape consistency errors", "[unit]") {
  common::Json doc = base_model();
  doc["modules"][2]["heads"] = 3;
  doc["modules"][2]["kv_heads"] = 3;
  CHECK(model_error(doc) == "m.json: /modules/2/heads: expected a divisor of hidden (128), got 3");

  doc = base_model();
  doc["modules"][2]["kv_heads"] = 3;
  CHECK(model_error(doc) == "m.json: /modules/2/kv_heads: expected a divisor of heads (4), got 3");

  doc = base_model();
  doc["modules"][0]["input"]["image_size"] = 50;
  CHECK(model_error(doc) ==
        "m.json: /modules/0/input/image_size: expected a multiple of patch_size (14), got 50");

  doc = base_model();
  doc["modules"][1]["dims"] = {32, 128};
  CHECK(
      model_error(doc) ==
      "m.json: /modalities/image/projector: projector proj takes width 32, but the encoder delivers 64 (its "
      "hidden size times merge)");

  doc = base_model();
  doc["modules"][1]["dims"] = {64, 100};
  CHECK(model_error(doc) ==
        "m.json: /modalities/image/projector: projector proj outputs width 100, but the LLM's hidden size is "
        "128");

  doc = base_model();
  doc["modalities"]["image"]["encoder"] = "clip";
  CHECK(model_error(doc) ==
        "m.json: /modalities/image/encoder: expected the name of an encoder module (vit), got the string "
        "\"clip\"");

  doc = base_model();
  doc["modalities"]["image"]["merge"] = 5;
  CHECK(model_error(doc) ==
        "m.json: /modalities/image: merge * pool (5) must divide the 16 patches of a tile");

  doc = base_model();
  doc["modules"].erase(2);
  CHECK(model_error(doc) == "m.json: /modules: no module of kind \"llm\"; a model has exactly one");

  doc = base_model();
  doc["modules"][1]["name"] = "vit";
  CHECK(model_error(doc) == "m.json: /modules/1/name: duplicate module name 'vit'");

  doc = base_model();
  doc["modalities"]["smell"] = common::Json::object();
  CHECK(model_error(doc) ==
        "m.json: /modalities/smell: unknown member; expected one of: image, video, audio");
}

TEST_CASE("pipeweaver model: file errors name file:line:column", "[unit]") {
  testing::TempDir dir;
  const auto path = (dir / "broken.json").string();
  testing::write_text(path, "{\n  \"version\": 1,\n  \"modules\": [,]\n}\n");
  const std::string err = error_of([&] { load_model(path); });
  CHECK(err.rfind(path + ":3:15: invalid JSON: syntax error", 0) == 0);

  const std::string missing = (dir / "nope.json").string();
  CHECK(error_of([&] { load_model(missing); }) ==
        missing + ": cannot open for reading: No such file or directory");
}
