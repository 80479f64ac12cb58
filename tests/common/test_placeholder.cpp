#include "test_support.hpp"
TEST_CASE("build works", "[unit]") { REQUIRE(1 + 1 == 2); }
