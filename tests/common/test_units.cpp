#include "common/units.hpp"

#include "common/errors.hpp"
#include "test_support.hpp"

using common::try_parse_size;

TEST_CASE("sizes parse with binary and decimal units", "[unit]") {
  struct Case {
    const char* text;
    std::uint64_t bytes;
  };
  const Case cases[] = {
      {"0", 0},
      {"1", 1},
      {"512", 512},
      {"512B", 512},
      {"512 b", 512},
      {"1K", 1024},
      {"1k", 1024},
      {"1KiB", 1024},
      {"1Ki", 1024},
      {"1KB", 1000},
      {"1kB", 1000},
      {"512M", 512ull << 20},
      {"512MiB", 512ull << 20},
      {"512MB", 512000000ull},
      {"2GiB", 2ull << 30},
      {"2gib", 2ull << 30},
      {"2 GiB", 2ull << 30},
      {"  2G  ", 2ull << 30},
      {"1.5G", 1610612736ull},
      {"1.5GB", 1500000000ull},
      {"0.5K", 512},
      {"1.25K", 1280},
      {"3T", 3ull << 40},
      {"+4M", 4ull << 20},
      {"1.", 1},
      {".5K", 512},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto r = try_parse_size(c.text);
    REQUIRE(r.bytes.has_value());
    CHECK(*r.bytes == c.bytes);
  }
  CHECK(*try_parse_size("18446744073709551615").bytes == UINT64_MAX);
  CHECK(*try_parse_size("16383P").bytes == 16383ull << 50);
}

TEST_CASE("bad sizes are rejected with a reason", "[unit]") {
  struct Case {
    const char* text;
    const char* why;
  };
  const Case cases[] = {
      {"", "an empty size"},
      {"   ", "an empty size"},
      {"-1G", "a negative size"},
      {"G", "no number"},
      {".", "no number"},
      {"abc", "no number"},
      {"12X", "an unknown unit 'X' (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)"},
      {"1GG", "an unknown unit 'GG' (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)"},
      {"1.2.3", "an unknown unit '.3' (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)"},
      {"1 0", "an unknown unit '0' (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)"},
      {"1.5", "a fraction of a byte"},
      {"1.5B", "a fraction of a byte"},
      {"0.1K", "a fraction of a byte"},
      {"18446744073709551616", "a size beyond 2^64-1 bytes"},
      {"16384P", "a size beyond 2^64-1 bytes"},
      {"99999999999999999999999999999999999999999", "a number too large"},
  };
  for (const auto& c : cases) {
    INFO("'" << c.text << "'");
    auto r = try_parse_size(c.text);
    CHECK_FALSE(r.bytes.has_value());
    CHECK(r.error == c.why);
  }
}

TEST_CASE("parse_size_arg names the flag in a usage error", "[unit]") {
  CHECK(common::parse_size_arg("4G", "--memory") == 4ull << 30);
  try {
    common::parse_size_arg("lots", "--memory");
    FAIL("no throw");
  } catch (const common::UsageError& e) {
    CHECK(std::string(e.what()) == "--memory: expected a size such as 512M, 2GiB or 1.5G, got 'lots' (no number)");
  }
}

TEST_CASE("sizes print with binary units and three significant digits", "[unit]") {
  CHECK(common::format_size(0) == "0 B");
  CHECK(common::format_size(1023) == "1023 B");
  CHECK(common::format_size(1024) == "1.00 KiB");
  CHECK(common::format_size(1536) == "1.50 KiB");
  CHECK(common::format_size(10 * 1024) == "10.0 KiB");
  CHECK(common::format_size(512ull << 20) == "512 MiB");
  CHECK(common::format_size(2ull << 30) == "2.00 GiB");
  CHECK(common::format_size((1ull << 20) - 1) == "1.00 MiB");
  CHECK(common::format_size(UINT64_MAX) == "16.0 EiB");
  for (std::uint64_t b : {1ull << 30, 3ull << 20, 1536ull}) {
    // What format_size prints parses back to within its rounding.
    std::string s = common::format_size(b);
    s.erase(s.find(' '), 1);
    auto r = common::try_parse_size(s);
    REQUIRE(r.bytes.has_value());
    CHECK(*r.bytes == b);
  }
}
