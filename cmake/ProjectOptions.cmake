# Compile flags shared by every project target, applied through an interface target.
add_library(pwpi_options INTERFACE)
add_library(pwpi::options ALIAS pwpi_options)

target_compile_options(pwpi_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wpedantic>)
if(PWPI_WERROR)
  target_compile_options(pwpi_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
endif()
if(PWPI_NATIVE)
  target_compile_options(pwpi_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
endif()
# Release builds use -O3 (CMake's default Release flags already hold -O3 -DNDEBUG);
# RelWithDebInfo keeps -O2 -g for profiling.
if(PWPI_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_compile_options(pwpi_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:${_san}>)
  # GCC 12's flow analysis misfires under the sanitizers' instrumentation (in libstdc++'s
  # std::function and std::regex); those warnings are noise in this build only.
  target_compile_options(pwpi_options INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized>)
  target_link_options(pwpi_options INTERFACE ${_san})
endif()
