// Counts the heap allocations of a test program: alloc_counter.cpp replaces the global
// operator new (in its own file, so the compiler does not pair it with inlined deletes).
#pragma once

#include <cstddef>

namespace testing {

/// operator new calls so far, on every thread.
std::size_t allocation_count();

}  // namespace testing
