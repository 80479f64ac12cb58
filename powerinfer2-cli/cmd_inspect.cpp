// `powerinfer2-cli inspect MODEL`: what a GGUF file holds (format, metadata, tensors), as a
// table for people or as one JSON object (--json) for scripts.
#include <algorithm>
#include <array>
#include <charconv>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/units.hpp"
#include "io/gguf_reader.hpp"

namespace powerinfer2::cli {

namespace {

using io::GgufArray;
using io::GgufFile;
using io::GgufValue;
using io::GgufValueType;
using OrderedJson = nlohmann::ordered_json;

struct InspectOptions {
  std::string model;
  bool json = false;
  bool tensors = true;
  std::size_t max_array = 16;  // array elements shown, in both outputs
};

constexpr std::size_t kMaxStringChars = 60;   // longer strings end in "..."
constexpr std::size_t kMaxValueChars = 100;   // a metadata value's width in the table
constexpr std::size_t kMaxKeyColumn = 48;

// Shortest text that reads back as the same float.
template <class F>
std::string float_text(F v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

template <class T>
std::string scalar_text(const T& v) {
  if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
  else if constexpr (std::is_same_v<T, std::string>) return io::quote_string(v, kMaxStringChars);
  else if constexpr (std::is_floating_point_v<T>) return float_text(v);
  else return std::to_string(v);
}

std::string array_text(const GgufArray& a, std::size_t max_items, std::size_t max_chars);

template <class T>
std::string element_text(const T& v, std::size_t max_items, std::size_t max_chars) {
  if constexpr (std::is_same_v<T, GgufArray>) return array_text(v, max_items, max_chars);
  else return scalar_text(v);
}

// "[1, 2, 3, ... (29997 more)]", cut at max_items elements or about max_chars characters.
std::string array_text(const GgufArray& a, std::size_t max_items, std::size_t max_chars) {
  return std::visit(
      [&](const auto& items) {
        std::string out = "[";
        std::size_t shown = 0;
        for (; shown < items.size() && shown < max_items; ++shown) {
          using E = typename std::decay_t<decltype(items)>::value_type;
          std::string e = element_text(static_cast<E>(items[shown]), max_items, max_chars);
          if (shown > 0 && out.size() + e.size() > max_chars) break;
          out += shown ? ", " : "";
          out += e;
        }
        if (shown < items.size()) out += (shown ? ", ... (" : "... (") + std::to_string(items.size() - shown) + " more)";
        return out + "]";
      },
      a.items);
}

std::string value_text(const GgufValue& v, std::size_t max_items) {
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>) return array_text(x, max_items, kMaxValueChars);
        else return scalar_text(x);
      },
      v.storage());
}

OrderedJson array_json(const GgufArray& a, std::size_t max_items);

template <class T>
OrderedJson element_json(const T& v, std::size_t max_items) {
  if constexpr (std::is_same_v<T, GgufArray>) return array_json(v, max_items);
  else if constexpr (std::is_same_v<T, float>) return static_cast<double>(v);
  else return v;
}

OrderedJson array_json(const GgufArray& a, std::size_t max_items) {
  return std::visit(
      [&](const auto& items) {
        using E = typename std::decay_t<decltype(items)>::value_type;
        OrderedJson out = OrderedJson::array();
        for (std::size_t i = 0; i < items.size() && i < max_items; ++i)
          out.push_back(element_json(static_cast<E>(items[i]), max_items));
        return out;
      },
      a.items);
}

std::string kind_text(const GgufFile& f) {
  return f.kind() == io::GgufKind::powerinfer ? "PowerInfer sparse GGUF (magic PWRI), version " + std::to_string(f.version())
                                              : "GGUF v" + std::to_string(f.version());
}

struct TypeTotals {
  std::uint64_t tensors = 0, parameters = 0, bytes = 0;
};

std::map<std::uint32_t, TypeTotals> totals_by_type(const GgufFile& f, TypeTotals& all) {
  std::map<std::uint32_t, TypeTotals> by_type;  // ordered by ggml type id
  for (const io::GgufTensorInfo& t : f.tensor_infos()) {
    for (TypeTotals* s : {&by_type[static_cast<std::uint32_t>(t.type)], &all}) {
      s->tensors += 1;
      s->parameters += t.n_elements;
      s->bytes += t.size_bytes;
    }
  }
  return by_type;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}
std::string pad_left(std::string s, std::size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

void print_human(const GgufFile& f, const InspectOptions& o, std::ostream& out) {
  out << f.path() << ": " << kind_text(f) << ", " << f.file_size() << " bytes ("
      << common::format_size(f.file_size()) << ")\n";
  out << "  alignment:     " << f.alignment() << "\n";
  out << "  tensor data:   from byte " << f.data_offset() << (f.tensor_count() == 0 ? " (no tensors)" : "") << "\n";

  out << "\nmetadata (" << f.metadata().size() << " keys):\n";
  std::size_t key_w = 3, type_w = 4;
  for (const io::GgufKeyValue& kv : f.metadata()) {
    key_w = std::max(key_w, std::min(kv.key.size(), kMaxKeyColumn));
    type_w = std::max(type_w, io::gguf_type_label(kv.value).size());
  }
  out << "  " << pad("KEY", key_w) << "  " << pad("TYPE", type_w) << "  VALUE\n";
  for (const io::GgufKeyValue& kv : f.metadata())
    out << "  " << pad(kv.key, key_w) << "  " << pad(io::gguf_type_label(kv.value), type_w) << "  "
        << value_text(kv.value, o.max_array) << "\n";

  TypeTotals all;
  const auto by_type = totals_by_type(f, all);
  if (o.tensors) {
    out << "\ntensors (" << f.tensor_count() << "):\n";
    std::vector<std::array<std::string, 5>> rows;
    rows.push_back({"NAME", "TYPE", "SHAPE", "OFFSET", "SIZE"});
    for (const io::GgufTensorInfo& t : f.tensor_infos())
      rows.push_back({t.name, std::string(io::ggml_type_name(t.type)), io::format_shape(t.shape()),
                      std::to_string(t.file_offset), common::format_size(t.size_bytes)});
    std::array<std::size_t, 5> w{};
    for (const auto& r : rows)
      for (std::size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], r[c].size());
    if (rows.size() == 1) rows.clear();  // no header over an empty table
    for (const auto& r : rows)
      out << "  " << pad(r[0], w[0]) << "  " << pad(r[1], w[1]) << "  " << pad(r[2], w[2]) << "  "
          << pad_left(r[3], w[3]) << "  " << pad_left(r[4], w[4]) << "\n";
  }

  out << "\ntotals: " << all.tensors << " tensors, " << all.parameters << " parameters, "
      << common::format_size(all.bytes) << " of tensor data\n";
  if (by_type.empty()) return;
  std::vector<std::array<std::string, 4>> rows;
  rows.push_back({"TYPE", "TENSORS", "PARAMETERS", "SIZE"});
  for (const auto& [id, s] : by_type)
    rows.push_back({std::string(io::ggml_type_name(static_cast<io::GgmlType>(id))), std::to_string(s.tensors),
                    std::to_string(s.parameters), common::format_size(s.bytes)});
  std::array<std::size_t, 4> w{};
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], r[c].size());
  for (const auto& r : rows)
    out << "  " << pad(r[0], w[0]) << "  " << pad_left(r[1], w[1]) << "  " << pad_left(r[2], w[2]) << "  "
        << pad_left(r[3], w[3]) << "\n";
}

OrderedJson to_json(const GgufFile& f, const InspectOptions& o) {
  OrderedJson j;
  j["file"] = f.path();
  j["format"] = f.kind() == io::GgufKind::powerinfer ? "PWRI" : "GGUF";
  j["version"] = f.version();
  j["file_size"] = f.file_size();
  j["alignment"] = f.alignment();
  j["data_offset"] = f.data_offset();

  OrderedJson meta = OrderedJson::object();
  for (const io::GgufKeyValue& kv : f.metadata()) {
    OrderedJson e;
    e["type"] = std::string(io::gguf_value_type_name(kv.value.type()));
    if (const GgufArray* a = kv.value.get_if<GgufArray>()) {
      e["element_type"] = std::string(io::gguf_value_type_name(a->element_type()));
      e["length"] = a->size();
      e["value"] = array_json(*a, o.max_array);
    } else {
      e["value"] = std::visit([](const auto& x) { return element_json(x, 0); }, kv.value.storage());
    }
    meta[kv.key] = std::move(e);
  }
  j["metadata"] = std::move(meta);

  if (o.tensors) {
    OrderedJson tensors = OrderedJson::array();
    for (const io::GgufTensorInfo& t : f.tensor_infos()) {
      OrderedJson e;
      e["name"] = t.name;
      e["type"] = std::string(io::ggml_type_name(t.type));
      e["shape"] = std::vector<std::uint64_t>(t.shape().begin(), t.shape().end());
      e["offset"] = t.file_offset;
      e["size"] = t.size_bytes;
      e["n_elements"] = t.n_elements;
      tensors.push_back(std::move(e));
    }
    j["tensors"] = std::move(tensors);
  }

  TypeTotals all;
  const auto by_type = totals_by_type(f, all);
  OrderedJson types = OrderedJson::object();
  for (const auto& [id, s] : by_type)
    types[std::string(io::ggml_type_name(static_cast<io::GgmlType>(id)))] = {
        {"tensors", s.tensors}, {"parameters", s.parameters}, {"bytes", s.bytes}};
  j["totals"] = {{"tensors", all.tensors}, {"parameters", all.parameters}, {"bytes", all.bytes}, {"by_type", types}};
  return j;
}

void run_inspect(const InspectOptions& o) {
  const GgufFile f(o.model);
  std::ostringstream text;
  if (o.json) {
    // Metadata strings are not always valid UTF-8: replace bad bytes rather than fail.
    text << to_json(f, o).dump(2, ' ', false, OrderedJson::error_handler_t::replace) << "\n";
  } else {
    print_human(f, o, text);
  }
  std::cout << text.str() << std::flush;
  if (!std::cout) throw common::IoError("<stdout>", "write", "the stream failed");
}

}  // namespace

void register_inspect(common::CliApp& cli) {
  auto opts = std::make_shared<InspectOptions>();
  CLI::App* cmd = cli.add_command("inspect", "Show a GGUF model's format, metadata and tensors",
                                  [opts] { run_inspect(*opts); });
  cmd->add_option("MODEL", opts->model, "GGUF model file (llama.cpp GGUF v2/v3, or PowerInfer PWRI)")
      ->required();
  cmd->add_flag("--json", opts->json, "Print one JSON object instead of tables");
  cmd->add_flag("--tensors,!--no-tensors", opts->tensors, "List every tensor (default) or only the totals");
  cmd->add_option("--max-array", opts->max_array, "Array elements shown per metadata value")
      ->default_val(16)
      ->check(CLI::NonNegativeNumber);
}

}  // namespace powerinfer2::cli
