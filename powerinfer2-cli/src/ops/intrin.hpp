// <immintrin.h>, for the SIMD kernels of src/ops. GCC 12's AVX-512 intrinsics start from
// _mm512_undefined_*() and trip -Wuninitialized once inlined (GCC bug 105593); the
// warnings are silenced for the header's own lines only.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
