// The batch trace: parsing every item kind, write -> read round trip, and error lines
// naming file:line and the JSON pointer.
#include <sstream>

#include "spec/trace.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver::spec;
using pwtest::error_of;

namespace {

const char* kGoodLine =
    R"({"version":1,"batch":0,"samples":[{"text_tokens":12,"images":[{"tokens":576},{"tokens":1280,"tiles":5}]},)"
    R"({"text_tokens":30,"video":[{"frames":8,"tokens_per_frame":144}]},{"text_tokens":5,"audio":[{"seconds":12.5}]},)"
    R"({"text_tokens":900}]})";

std::string trace_error(const std::string& text) {
  testing::TempDir dir;
  const auto path = (dir / "trace.jsonl").string();
  testing::write_text(path, text);
  std::string err = error_of([&] { load_trace(path); });
  // Report errors relative to the file name, as a user sees them.
  if (err.rfind(path, 0) == 0) err = "trace.jsonl" + err.substr(path.size());
  return err;
}

}  // namespace

TEST_CASE("pipeweaver trace: a line with every item kind parses", "[unit]") {
  testing::TempDir dir;
  const auto path = (dir / "t.jsonl").string();
  testing::write_text(path, std::string(kGoodLine) + "\n\n" + kGoodLine + "\n");
  const std::vector<Batch> batches = load_trace(path);
  REQUIRE(batches.size() == 2);
  const Batch& b = batches[0];
  REQUIRE(b.samples.size() == 4);
  CHECK(b.samples[0].images.size() == 2);
  CHECK(b.samples[0].images[1].tiles == 5);
  CHECK(b.samples[0].image_tokens() == 576 + 1280);
  CHECK(b.samples[1].video_tokens() == 8 * 144);
  CHECK(b.samples[2].audios[0].seconds == 12.5);
  CHECK(b.samples[3].text_tokens == 900);
}

TEST_CASE("pipeweaver trace: written batches read back identical", "[unit]") {
  Batch b;
  b.index = 3;
  Sample s;
  s.text_tokens = 17;
  s.images = {{576, 1}, {768, 3}};
  s.videos = {{16, 144}};
  s.audios = {{0.01}, {29.99}, {7.0}};
  b.samples = {s, Sample{42, {}, {}, {}, -1}};
  const std::string line = batch_to_json_line(b);
  CHECK(line.find("\"seconds\":29.99") != std::string::npos);
  CHECK(line.find("\"tiles\":3") != std::string::npos);
  CHECK(line.find("\"tiles\":1") == std::string::npos);  // the default is left out

  testing::TempDir dir;
  const auto path = (dir / "t.jsonl").string();
  std::ostringstream out;
  write_trace(out, {b});
  testing::write_text(path, out.str());
  const std::vector<Batch> back = load_trace(path);
  REQUIRE(back.size() == 1);
  CHECK(back[0].index == 3);
  REQUIRE(back[0].samples.size() == 2);
  const Sample& r = back[0].samples[0];
  CHECK(r.text_tokens == 17);
  CHECK(r.images.size() == 2);
  CHECK(r.images[1].tokens == 768);
  CHECK(r.videos[0].frames == 16);
  CHECK(r.audios[1].seconds == 29.99);
  CHECK(batch_to_json_line(back[0]) == line);
}

TEST_CASE("pipeweaver trace: errors name file:line and the JSON pointer", "[unit]") {
  // 16 good lines, then a negative token count on line 17.
  std::string text;
  for (int i = 0; i < 16; ++i) text += std::string(kGoodLine) + "\n";
  const std::string bad = R"({"version":1,"samples":[{"text_tokens":1},{"text_tokens":1},{"text_tokens":1},)"
                          R"({"text_tokens":1,"images":[{"tokens":-4}]}]})";
  CHECK(trace_error(text + bad + "\n") ==
        "trace.jsonl:17: /samples/3/images/0/tokens: expected a positive integer, got -4");

  CHECK(trace_error(std::string(kGoodLine) + "\n[1, 2]\n") ==
        "trace.jsonl:2: expected an object (one batch per line), got an array of 2");
  CHECK(trace_error(R"({"samples":[{"text_tokens":1}]})") ==
        "trace.jsonl:1: /version: missing required member (every pipeweaver trace file declares its format "
        "version; this build reads version 1)");
  CHECK(trace_error(R"({"version":2,"samples":[{"text_tokens":1}]})") ==
        "trace.jsonl:1: /version: expected a supported pipeweaver trace version (1), got 2");
  CHECK(
      trace_error(R"({"version":1,"samples":[{"text_tokens":1,"image":[]}]})") ==
      "trace.jsonl:1: /samples/0/image: unknown member; expected one of: text_tokens, images, video, audio");
  CHECK(trace_error(R"({"version":1,"samples":[{"text_tokens":"12"}]})") ==
        "trace.jsonl:1: /samples/0/text_tokens: expected a non-negative integer, got the string \"12\"");
  CHECK(trace_error(R"({"version":1,"samples":[{"text_tokens":1,"images":[{"tokens":100,"tiles":3}]}]})") ==
        "trace.jsonl:1: /samples/0/images/0/tokens: expected a multiple of tiles (3), got 100");
  CHECK(trace_error(R"({"version":1,"samples":[{"text_tokens":1,"audio":[{"seconds":-2}]}]})") ==
        "trace.jsonl:1: /samples/0/audio/0/seconds: expected a positive number, got -2");
  CHECK(trace_error(R"({"version":1,"samples":[{"text_tokens":0}]})") ==
        "trace.jsonl:1: /samples/0: a sample with no tokens: text_tokens is 0 and it has no images, video or "
        "audio");
  CHECK(trace_error(R"({"version":1,"samples":[]})") ==
        "trace.jsonl:1: /samples: expected a non-empty array of samples, got an array of 0");
  CHECK(trace_error("\n\n") == "trace.jsonl: the trace holds no batches");
  const std::string syntax = trace_error(std::string(kGoodLine) + "\n{\"version\":1,\"samples\":[}\n");
  CHECK(syntax ==
        "trace.jsonl:2:25: invalid JSON: syntax error while parsing value - unexpected '}'; expected '[', "
        "'{', or "
        "a literal");
}
