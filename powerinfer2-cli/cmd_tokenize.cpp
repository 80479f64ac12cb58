// `powerinfer2-cli tokenize -m MODEL (-p TEXT | -f FILE) [--bos] [--show-pieces]`: the token
// ids of a text under a model's vocabulary (llama-tokenize's job), space-separated on one
// line, or one "id 'piece'" line per token.
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_reader.hpp"
#include "model/tokenizer.hpp"

namespace powerinfer2::cli {

namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string file;
  bool bos = false;
  bool show_pieces = false;
  CLI::Option* prompt_option = nullptr;
  CLI::Option* file_option = nullptr;
};

// A vocabulary piece on one line: control bytes, quote and backslash escaped.
std::string escape_piece(std::string_view piece) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : piece) {
    const auto b = static_cast<unsigned char>(ch);
    if (ch == '\\' || ch == '\'') {
      out += '\\';
      out += ch;
    } else if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

void run_tokenize(const TokenizeOptions& o) {
  const bool has_prompt = o.prompt_option->count() > 0, has_file = o.file_option->count() > 0;
  if (has_prompt == has_file)
    throw common::UsageError(has_prompt ? "give the text with -p or -f, not both"
                                        : "no text to tokenize: give -p TEXT or -f FILE");
  const std::string text = has_prompt ? o.prompt : common::read_file(o.file);
  const io::GgufFile file(o.model);
  const model::Tokenizer tokenizer = model::Tokenizer::from_gguf(file);
  const std::vector<model::TokenId> ids = tokenizer.encode(text, o.bos);

  std::string out;
  if (o.show_pieces) {
    for (model::TokenId id : ids)
      out += std::to_string(id) + " '" + escape_piece(tokenizer.piece(id)) + "'\n";
  } else {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
  }
  std::cout << out << std::flush;
  if (!std::cout) throw common::IoError("<stdout>", "write", "the stream failed");
}

}  // namespace

void register_tokenize(common::CliApp& cli) {
  auto opts = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = cli.add_command("tokenize", "Print the token ids of a text under a model's vocabulary",
                                  [opts] { run_tokenize(*opts); });
  cmd->add_option("-m,--model", opts->model, "GGUF model (or vocabulary-only GGUF) with a llama tokenizer")
      ->required();
  opts->prompt_option = cmd->add_option("-p,--prompt", opts->prompt, "The text to tokenize");
  opts->file_option = cmd->add_option("-f,--file", opts->file, "Read the text from a file (bytes as they are)");
  cmd->add_flag("--bos", opts->bos, "Put the BOS token first");
  cmd->add_flag("--show-pieces", opts->show_pieces, "Print one \"id 'piece'\" line per token");
}

}  // namespace powerinfer2::cli
