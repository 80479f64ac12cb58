#include "common/errors.hpp"

#include "test_support.hpp"

using common::InputError;
using common::Where;

TEST_CASE("Where formats only the parts that are set", "[unit]") {
  Where w;
  CHECK(w.format().empty());
  w.file = "trace.jsonl";
  CHECK(w.format() == "trace.jsonl");
  w.line = 17;
  CHECK(w.format() == "trace.jsonl:17");
  w.pointer = "/samples/3/images/0/tokens";
  CHECK(w.format() == "trace.jsonl:17: /samples/3/images/0/tokens");
  w.column = 4;
  CHECK(w.format() == "trace.jsonl:17:4: /samples/3/images/0/tokens");

  Where b;
  b.file = "model.gguf";
  b.byte_offset = 4096;
  b.item = "tensor blk.3.ffn_up.weight";
  CHECK(b.format() == "model.gguf: byte 4096: tensor blk.3.ffn_up.weight");
}

TEST_CASE("InputError reads expected/got and keeps the hint apart", "[unit]") {
  Where w;
  w.file = "trace.jsonl";
  w.line = 17;
  w.pointer = "/samples/3/images/0/tokens";
  InputError e(w, "a positive integer", "-4", "token counts come from the encoder");
  CHECK(std::string(e.what()) == "trace.jsonl:17: /samples/3/images/0/tokens: expected a positive integer, got -4");
  CHECK(e.hint() == "token counts come from the encoder");
  CHECK(e.expected() == "a positive integer");
  CHECK(e.got() == "-4");

  Where g;
  g.file = "model.gguf";
  auto m = InputError::message(g, "tensor blk.3.ffn_up.weight has shape 4096x11008, expected 4096x14336");
  CHECK(std::string(m.what()) == "model.gguf: tensor blk.3.ffn_up.weight has shape 4096x11008, expected 4096x14336");
  CHECK(m.hint().empty());
}

TEST_CASE("SettingError names its settings in words", "[unit]") {
  const common::SettingError e("memory-budget", "1.0 MiB is too small", "give more, or a shorter context", "ctx-size");
  CHECK(std::string(e.what()) == "memory budget 1.0 MiB is too small");
  CHECK(e.hint() == "give more, or a shorter context (ctx size)");
  CHECK(e.setting() == "memory-budget");
  CHECK(e.text() == "1.0 MiB is too small");
  CHECK(e.hint_text() == "give more, or a shorter context");
  CHECK(e.hint_setting() == "ctx-size");
  const common::SettingError bare("cluster-size", "5 does not divide 64");
  CHECK(std::string(bare.what()) == "cluster size 5 does not divide 64");
  CHECK(bare.hint().empty());
}

TEST_CASE("IoError names path, operation and reason", "[unit]") {
  common::IoError e("/nope/x.json", "open for reading", ENOENT);
  CHECK(std::string(e.what()) == "/nope/x.json: cannot open for reading: No such file or directory");
  CHECK(e.errno_value() == ENOENT);
}

TEST_CASE("PWPI_CHECK throws InternalError with the expression and location", "[unit]") {
  auto fails = [] { PWPI_CHECK_MSG(1 + 1 == 3, "arithmetic"); };
  try {
    fails();
    FAIL("no throw");
  } catch (const common::InternalError& e) {
    std::string what = e.what();
    CHECK(what.find("1 + 1 == 3") != std::string::npos);
    CHECK(what.find("test_errors.cpp:") != std::string::npos);
    CHECK(what.find("(arithmetic)") != std::string::npos);
  }
  CHECK_NOTHROW([] { PWPI_CHECK(2 > 1); }());
}
