#include "common/file_io.hpp"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "common/errors.hpp"

namespace common {

namespace {

// The temporaries of the AtomicOutputs open now, for a signal handler to remove. A slot is
// free (0), being written (1) or holds a path (2); the handler reads only slots in state 2,
// and unlink() is async-signal-safe. A temporary that finds no free slot (or a path too
// long) is still removed on unwinding, only not on a signal.
constexpr int kTempSlots = 64;
std::atomic<int> g_slot_state[kTempSlots];
char g_slot_path[kTempSlots][PATH_MAX];
constexpr int kCleanSignals[] = {SIGINT, SIGTERM, SIGHUP};

extern "C" void remove_temporaries_and_reraise(int sig) {
  for (int i = 0; i < kTempSlots; ++i)
    if (g_slot_state[i].load() == 2) ::unlink(g_slot_path[i]);
  ::signal(sig, SIG_DFL);  // end the way the signal would have ended the process
  ::raise(sig);
}

// Installs the handler for each signal still at its default action (one that the program or
// its parent set, SIG_IGN under nohup say, is left alone). Checked on every registration, so
// a forked child that reset its signals is covered too.
void install_handlers() {
  for (int sig : kCleanSignals) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_handler = remove_temporaries_and_reraise;
    ::sigemptyset(&sa.sa_mask);
    for (int s : kCleanSignals) ::sigaddset(&sa.sa_mask, s);  // one cleanup at a time
    ::sigaction(sig, &sa, nullptr);
  }
}

// The slot now holding `path`, or -1.
int register_temporary(const std::string& path) {
  if (path.size() >= PATH_MAX) return -1;
  install_handlers();
  for (int i = 0; i < kTempSlots; ++i) {
    int expected = 0;
    if (!g_slot_state[i].compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_slot_path[i], path.c_str(), path.size() + 1);
    g_slot_state[i].store(2);
    return i;
  }
  return -1;
}

void release_temporary(int slot) {
  if (slot >= 0) g_slot_state[slot].store(0);
}

}  // namespace

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, "open for reading", errno);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw IoError(path, "read", "it is a directory");
  }
  std::string out;
  if (st.st_size > 0) out.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw IoError(path, "read", err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

AtomicOutput::AtomicOutput(std::string path, bool binary) : path_(std::move(path)) {
  if (path_ == "-") return;
  // mkstemp in the target's directory, so the final rename stays on one file system.
  std::string templ = path_ + ".tmp.XXXXXX";
  int fd = ::mkstemp(templ.data());
  if (fd < 0) throw IoError(path_, "create a temporary file beside it", errno);
  ::close(fd);
  temp_path_ = templ;
  temp_slot_ = register_temporary(temp_path_);
  auto mode = std::ios::out | std::ios::trunc | (binary ? std::ios::binary : std::ios::openmode{});
  file_ = std::make_unique<std::ofstream>(temp_path_, mode);
  if (!*file_) {
    const int err = errno;
    ::unlink(temp_path_.c_str());
    release_temporary(temp_slot_);
    throw IoError(temp_path_, "open for writing", err);
  }
}

AtomicOutput::~AtomicOutput() {
  if (!committed_ && !temp_path_.empty()) {
    file_.reset();
    ::unlink(temp_path_.c_str());
  }
  release_temporary(temp_slot_);
}

std::ostream& AtomicOutput::stream() { return file_ ? static_cast<std::ostream&>(*file_) : std::cout; }

void AtomicOutput::commit() {
  if (committed_) return;
  if (!file_) {
    std::cout.flush();
    if (!std::cout) throw IoError("<stdout>", "write", "the stream failed");
    committed_ = true;
    return;
  }
  file_->flush();
  bool ok = static_cast<bool>(*file_);
  file_->close();
  if (!ok || file_->fail()) throw IoError(path_, "write", "the output stream failed (disk full?)");
  int fd = ::open(temp_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) throw IoError(path_, "sync to disk", err);
  }
  // mkstemp creates mode 0600; give the output the usual umask-based permissions.
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::chmod(temp_path_.c_str(), 0666 & ~mask);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) throw IoError(path_, "rename the finished output into place", errno);
  committed_ = true;
  // A signal from here on finds no temporary to remove (unlink of the old name fails harmlessly).
  release_temporary(temp_slot_);
  temp_slot_ = -1;
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicOutput out(path, /*binary=*/true);
  out.stream().write(data.data(), static_cast<std::streamsize>(data.size()));
  out.commit();
}

}  // namespace common
