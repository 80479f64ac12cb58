// `powerinfer2-cli tokenize` run as a process: output formats and exit codes 0/2/3/4.
#include "test_support.hpp"
#include "tokenizer_fixtures.hpp"

using namespace tokfix;

namespace {

std::string cli() { return std::string("'") + POWERINFER2_CLI + "'"; }

}  // namespace

TEST_CASE("powerinfer2 tokenize: ids on one line, or one piece per line", "[unit]") {
  testing::TempDir dir;
  const std::string model = write_vocab(dir / "v.gguf", small_vocab());
  const std::string tok = cli() + " tokenize -m " + model;

  testing::CommandResult r = testing::run_command(tok + " -p abc");
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(r.out == "265 264\n");
  CHECK(testing::run_command(tok + " -p abc --bos").out == "1 265 264\n");
  CHECK(testing::run_command(tok + " -p ''").out == "\n");
  CHECK(testing::run_command(tok + " -p '' --bos").out == "1\n");
  // --show-pieces prints the pieces as stored ("▁" for a space, byte tokens as <0xNN>).
  testing::write_text(dir / "quote.txt", "a'b\n");
  r = testing::run_command(tok + " --show-pieces -f " + (dir / "quote.txt").string());
  CHECK(r.exit_code == 0);
  CHECK(r.out == "265 '\xe2\x96\x81" "a'\n42 '<0x27>'\n261 'b'\n13 '<0x0A>'\n");

  // -f reads the file's bytes as they are (the trailing newline is text too).
  testing::write_text(dir / "text.txt", "a b\n");
  r = testing::run_command(tok + " -f " + (dir / "text.txt").string());
  CHECK(r.exit_code == 0);
  CHECK(r.out == "265 266 13\n");
}

TEST_CASE("powerinfer2 tokenize: exit codes", "[unit]") {
  testing::TempDir dir;
  const std::string model = write_vocab(dir / "v.gguf", small_vocab());
  testing::write_text(dir / "text.txt", "abc");
  const std::string text = (dir / "text.txt").string();

  testing::CommandResult r = testing::run_command(cli() + " tokenize -m " + model);
  CHECK(r.exit_code == 2);
  CHECK(r.err.rfind("error: no text to tokenize: give -p TEXT or -f FILE\n", 0) == 0);
  r = testing::run_command(cli() + " tokenize -m " + model + " -p abc -f " + text);
  CHECK(r.exit_code == 2);
  CHECK(r.out.empty());
  CHECK(testing::run_command(cli() + " tokenize -p abc").exit_code == 2);

  const std::string missing = (dir / "absent.txt").string();
  r = testing::run_command(cli() + " tokenize -m " + model + " -f " + missing);
  CHECK(r.exit_code == 4);
  CHECK(r.err == "error: " + missing + ": cannot open for reading: No such file or directory\n");
  CHECK(testing::run_command(cli() + " tokenize -m " + missing + " -p abc").exit_code == 4);

  // Not a GGUF file; a GGUF whose tokenizer is not supported.
  r = testing::run_command(cli() + " tokenize -m " + text + " -p abc");
  CHECK(r.exit_code == 3);
  CHECK(r.out.empty());
  const std::string gpt2 = write_vocab(dir / "gpt2.gguf", small_vocab(),
                                       [](io::GgufWriter& w) { w.set("tokenizer.ggml.model", "gpt2"); });
  r = testing::run_command(cli() + " tokenize -m " + gpt2 + " -p abc");
  CHECK(r.exit_code == 3);
  CHECK(r.err == "error: " + gpt2 + ": metadata key tokenizer.ggml.model: GPT-2-style byte-level BPE (\"gpt2\") is "
                                    "not supported yet; supported: \"llama\" (SentencePiece)\n");
}
