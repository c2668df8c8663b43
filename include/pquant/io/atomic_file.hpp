// Atomic file writes: a file is either absent, its old content, or the complete new content.
//
// AtomicFile writes to a temporary file in the destination's directory (same file system, so the
// final rename(2) is atomic), then commit() fsyncs the data, renames it over the destination and
// fsyncs the directory so the rename itself survives a power loss. If commit() is never reached
// (an exception, an early return) the destructor removes the temporary file. Every failure is an
// IoError naming the function, the path and the operating system's reason (strerror(errno)).
// POSIX only (Linux, macOS), like the rest of pquant's I/O.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"

namespace pquant::io {

namespace detail {

inline std::string errno_text(int err) {
  return std::strerror(err);
}

/// Directory part of a path ("." when there is none), for the temp file and the directory fsync.
inline std::string parent_directory(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// write(2) until everything is written; retries on EINTR and short writes.
inline void write_all(int fd, const void* data, std::size_t size, std::string_view fn,
                      const std::string& path) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  while (size > 0) {
    const ::ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      throw IoError(::pquant::detail::concat("pquant: ", fn, ": cannot write '", path,
                                             "': ", errno_text(err)));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

}  // namespace detail

class AtomicFile {
 public:
  /// Creates the temporary file `<path>.tmp.XXXXXX` next to `path`.
  explicit AtomicFile(std::string path) : path_(std::move(path)) {
    require<ValueError>(!path_.empty(), "AtomicFile: argument 'path' must be non-empty");
    std::string pattern = path_ + ".tmp.XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    fd_ = ::mkstemp(buf.data());
    if (fd_ < 0) {
      const int err = errno;
      throw IoError(
          ::pquant::detail::concat("pquant: AtomicFile: cannot create a temporary file for '",
                                   path_, "': ", detail::errno_text(err)));
    }
    temp_.assign(buf.data());
    // mkstemp creates mode 0600; give the final file the usual 0644 (minus the umask).
    const ::mode_t mask = ::umask(0);
    ::umask(mask);
    (void)::fchmod(fd_, static_cast<::mode_t>(0666 & ~mask));
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() { abandon(); }

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }
  bool committed() const { return committed_; }
  std::size_t bytes_written() const { return written_; }

  void write(const void* data, std::size_t size) {
    require<IoError>(fd_ >= 0, "AtomicFile::write: '", path_,
                     "' is already committed or abandoned");
    detail::write_all(fd_, data, size, "AtomicFile::write", temp_);
    written_ += size;
  }
  void write(std::span<const std::uint8_t> bytes) { write(bytes.data(), bytes.size()); }
  void write(std::string_view text) { write(text.data(), text.size()); }

  /// fsync, rename over the destination, fsync the directory. After this the new content is
  /// durable.
  void commit() {
    require<IoError>(fd_ >= 0, "AtomicFile::commit: '", path_,
                     "' is already committed or abandoned");
    if (::fsync(fd_) != 0) fail("fsync", temp_);
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail("close", temp_);
    if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("rename to '" + path_ + "'", temp_);
    committed_ = true;
    const std::string dir = detail::parent_directory(path_);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) fail("open directory", dir);
    const int rc = ::fsync(dfd);
    const int err = errno;
    ::close(dfd);
    if (rc != 0 &&
        err != EINVAL) {  // some file systems cannot fsync a directory (EINVAL): harmless
      errno = err;
      fail("fsync directory", dir);
    }
  }

  /// Closes and removes the temporary file; the destination is untouched. Idempotent.
  void abandon() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    if (!committed_ && !temp_.empty()) {
      ::unlink(temp_.c_str());
      temp_.clear();
    }
  }

 private:
  // `on` by value: it may be temp_, which abandon() clears.
  [[noreturn]] void fail(const std::string& what, std::string on) {
    const int err = errno;
    abandon();
    throw IoError(::pquant::detail::concat("pquant: AtomicFile::commit: ", what, " failed for '",
                                           on, "': ", detail::errno_text(err)));
  }

  std::string path_;
  std::string temp_;
  int fd_ = -1;
  bool committed_ = false;
  std::size_t written_ = 0;
};

/// Writes `bytes` to `path` atomically (see AtomicFile).
inline void write_file_atomic(const std::string& path, std::span<const std::uint8_t> bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

namespace detail {

/// A read-only descriptor of a regular file and its size, closed on destruction. `fn` names the
/// public function in error messages.
class ReadOnlyFile {
 public:
  ReadOnlyFile(const std::string& path, std::string_view fn)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) {
      const int err = errno;
      throw IoError(::pquant::detail::concat("pquant: ", fn, ": cannot open '", path,
                                             "': ", errno_text(err)));
    }
    struct ::stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw IoError(::pquant::detail::concat("pquant: ", fn, ": cannot stat '", path,
                                             "': ", errno_text(err)));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                         : S_ISCHR(st.st_mode)  ? "a character device"
                         : S_ISBLK(st.st_mode)  ? "a block device"
                         : S_ISFIFO(st.st_mode) ? "a pipe"
                                                : "not a regular file";
      throw IoError(::pquant::detail::concat("pquant: ", fn, ": '", path, "' is ", kind,
                                             ", expected a regular file"));
    }
    size_ = static_cast<std::size_t>(st.st_size);
  }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ~ReadOnlyFile() { ::close(fd_); }

  int fd() const { return fd_; }
  std::size_t size() const { return size_; }

 private:
  int fd_;
  std::size_t size_ = 0;
};

}  // namespace detail

/// Reads a whole regular file into an aligned buffer (zero padding after the end).
inline AlignedBuffer<std::uint8_t> read_file(const std::string& path) {
  const detail::ReadOnlyFile file(path, "read_file");
  const std::size_t size = file.size();
  AlignedBuffer<std::uint8_t> out(size);
  std::size_t done = 0;
  while (done < size) {
    const ::ssize_t n = ::read(file.fd(), out.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      throw IoError(::pquant::detail::concat("pquant: read_file: cannot read '", path, "' (", done,
                                             " of ", size, " bytes): ", detail::errno_text(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  return out;
}

}  // namespace pquant::io
