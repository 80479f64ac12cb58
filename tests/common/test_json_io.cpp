#include "common/json_io.hpp"

#include "test_support.hpp"

using common::InputError;
using common::Json;
using common::JsonView;

namespace {
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST_CASE("a malformed JSON file names path, line and column", "[unit]") {
  testing::TempDir dir;
  auto path = (dir / "bad.json").string();
  testing::write_text(path, "{\n  \"version\": 1,\n  \"layers\": 3,\n}\n");
  std::string msg = error_of([&] { common::load_json_file(path); });
  CHECK(msg == path + ":4:1: invalid JSON: syntax error while parsing object key - unexpected '}'; expected string literal");

  testing::write_text(path, "{\"a\": tru}");
  msg = error_of([&] { common::load_json_file(path); });
  CHECK(msg.rfind(path + ":1:", 0) == 0);
  CHECK(msg.find("invalid JSON") != std::string::npos);

  testing::write_text(path, "");
  msg = error_of([&] { common::load_json_file(path); });
  CHECK(msg.rfind(path + ":1:1: invalid JSON:", 0) == 0);
}

TEST_CASE("a missing JSON file is an IoError, not an InputError", "[unit]") {
  CHECK_THROWS_AS(common::load_json_file("/nonexistent/dir/x.json"), common::IoError);
}

TEST_CASE("JsonView accessors report pointer, expected and got", "[unit]") {
  Json doc = Json::parse(R"({"version": 1, "name": "vit", "layers": -3, "ratio": 1.5,
      "samples": [{"tokens": 4}, {"tokens": "many"}], "gated": "yes", "kind": "mlp"})");
  auto root = common::json_root(doc, "model.json");
  CHECK(root.at("name").as_string() == "vit");
  CHECK(error_of([&] { root.at("layers").as_positive_int(); }) ==
        "model.json: /layers: expected a positive integer, got -3");
  CHECK(error_of([&] { root.at("ratio").as_int(); }) == "model.json: /ratio: expected an integer, got 1.5");
  CHECK(error_of([&] { root.at("samples").at(1).at("tokens").as_nonnegative_int(); }) ==
        "model.json: /samples/1/tokens: expected a non-negative integer, got the string \"many\"");
  CHECK(error_of([&] { root.at("samples").at(5); }) ==
        "model.json: /samples: expected an array with at least 6 elements, got an array of 2");
  CHECK(error_of([&] { root.at("hidden"); }) == "model.json: /hidden: missing required member");
  CHECK(error_of([&] { root.at("gated").as_bool(); }) == "model.json: /gated: expected true or false, got the string \"yes\"");
  CHECK(error_of([&] { root.at("kind").as_enum({"gelu", "swiglu"}); }) ==
        "model.json: /kind: expected one of gelu, swiglu, got the string \"mlp\"");
  CHECK(error_of([&] { root.at("ratio").as_number(0.0, 1.0); }) ==
        "model.json: /ratio: expected a number in [0, 1], got 1.5");
  CHECK(error_of([&] { root.at("name").at("x"); }) == "model.json: /name: expected an object, got the string \"vit\"");
  CHECK(root.at("samples").at(0).at("tokens").as_int(0, 10) == 4);
  CHECK(root.int_or("missing", 7) == 7);
  CHECK_FALSE(root.find("missing").has_value());
  CHECK(root.at("samples").items().size() == 2);
  CHECK(root.at("samples").items()[1].pointer() == "/samples/1");
}

TEST_CASE("allow_only catches misspelt members", "[unit]") {
  Json doc = Json::parse(R"({"version": 1, "hiden": 4096})");
  auto root = common::json_root(doc, "m.json");
  CHECK(error_of([&] { root.allow_only({"version", "hidden"}); }) ==
        "m.json: /hiden: unknown member; expected one of: version, hidden");
}

TEST_CASE("pointer tokens are escaped", "[unit]") {
  Json doc = Json::parse(R"({"a/b": {"c~d": "x"}})");
  auto root = common::json_root(doc, "f.json");
  CHECK(error_of([&] { root.at("a/b").at("c~d").as_int(); }) ==
        "f.json: /a~1b/c~0d: expected an integer, got the string \"x\"");
}

TEST_CASE("require_version demands a supported integer version", "[unit]") {
  auto check = [](const char* text) {
    Json doc = Json::parse(text);
    return error_of([&] { common::require_version(common::json_root(doc, "c.json"), "pipeweaver cluster", 1, 1); });
  };
  CHECK(check(R"({"version": 1})") == "(no error)");
  CHECK(check(R"({"version": 2})") == "c.json: /version: expected a supported pipeweaver cluster version (1), got 2");
  CHECK(check(R"({"version": "1"})") == "c.json: /version: expected an integer format version, got the string \"1\"");
  CHECK(check(R"({})") ==
        "c.json: /version: missing required member (every pipeweaver cluster file declares its format version; "
        "this build reads version 1)");
  CHECK(check(R"([1])") == "c.json: expected a JSON object (pipeweaver cluster), got an array of 1");
  Json doc = Json::parse(R"({"version": 3})");
  CHECK(common::require_version(common::json_root(doc, "c.json"), "x", 2, 3) == 3);
}

TEST_CASE("JSON Lines records carry their line number", "[unit]") {
  testing::TempDir dir;
  auto path = (dir / "t.jsonl").string();
  testing::write_text(path, "{\"n\": 1}\n\n{\"n\": 2}\r\n{\"n\": -4}\n");
  std::vector<std::int64_t> seen;
  std::string msg = error_of([&] {
    common::for_each_jsonl(path, [&](const JsonView& rec) { seen.push_back(rec.at("n").as_positive_int()); });
  });
  CHECK(seen == std::vector<std::int64_t>{1, 2});
  CHECK(msg == path + ":4: /n: expected a positive integer, got -4");

  testing::write_text(path, "{\"n\": 1}\n{\"n\": 2,}\n");
  msg = error_of([&] { common::for_each_jsonl(path, [](const JsonView&) {}); });
  CHECK(msg.rfind(path + ":2:9: invalid JSON:", 0) == 0);
}
