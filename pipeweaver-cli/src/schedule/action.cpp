#include "schedule/action.hpp"

#include <charconv>

namespace pipeweaver::schedule {

char op_char(Op op) {
  switch (op) {
    case Op::F: return 'F';
    case Op::B: return 'B';
    case Op::I: return 'I';
    case Op::W: return 'W';
  }
  return '?';
}

std::string to_string(const Action& action) {
  return std::to_string(action.stage) + op_char(action.op) + std::to_string(action.microbatch);
}

namespace {
// Reads a non-negative decimal integer without sign or leading '+'; false if absent or too big.
bool read_index(std::string_view text, std::size_t& pos, std::int32_t& value) {
  const char* begin = text.data() + pos;
  const char* end = text.data() + text.size();
  if (begin == end || *begin < '0' || *begin > '9') return false;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc()) return false;
  pos += static_cast<std::size_t>(ptr - begin);
  return true;
}
}  // namespace

Action parse_action(std::string_view text, const common::Where& where) {
  auto fail = [&]() -> Action {
    throw common::InputError(where, "an action such as 2F0 (stage, F/B/I/W, microbatch)",
                             "\"" + std::string(text) + "\"");
  };
  Action a;
  std::size_t pos = 0;
  if (!read_index(text, pos, a.stage) || pos >= text.size()) return fail();
  switch (text[pos]) {
    case 'F': a.op = Op::F; break;
    case 'B': a.op = Op::B; break;
    case 'I': a.op = Op::I; break;
    case 'W': a.op = Op::W; break;
    default: return fail();
  }
  ++pos;
  if (!read_index(text, pos, a.microbatch) || pos != text.size()) return fail();
  return a;
}

}  // namespace pipeweaver::schedule
