#include "common/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "common/errors.hpp"

namespace common {

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
  auto mode = std::ios::out | std::ios::trunc | (binary ? std::ios::binary : std::ios::openmode{});
  file_ = std::make_unique<std::ofstream>(temp_path_, mode);
  if (!*file_) {
    ::unlink(temp_path_.c_str());
    throw IoError(temp_path_, "open for writing", errno);
  }
}

AtomicOutput::~AtomicOutput() {
  if (!committed_ && !temp_path_.empty()) {
    file_.reset();
    ::unlink(temp_path_.c_str());
  }
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
}

void write_file_atomic(const std::string& path, std::string_view data) {
  AtomicOutput out(path, /*binary=*/true);
  out.stream().write(data.data(), static_cast<std::streamsize>(data.size()));
  out.commit();
}

}  // namespace common
