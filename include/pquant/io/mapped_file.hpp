// MappedFile: a read-only, private memory map of a whole file (mmap(2)), unmapped on destruction.
//
// Used to load model files without copying them: the pages are read lazily by the kernel and
// shared with the page cache. The mapping starts on a page boundary, so a tensor at a 64-byte
// aligned file offset (io::SafetensorsWriter's layout) is 64-byte aligned in memory and the kernels
// read it in place. Mapping a file that another process truncates while
// mapped is undefined at the OS level (SIGBUS); pquant's own writers never modify a file in place
// (they replace it atomically), so a mapping always sees one complete version.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"

namespace pquant::io {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path) {
    const detail::ReadOnlyFile file(path, "MappedFile");
    size_ = file.size();
    if (size_ > 0) {  // the mapping outlives the descriptor and keeps the file alive
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        throw IoError(::pquant::detail::concat("pquant: MappedFile: cannot map '", path,
                                               "': ", detail::errno_text(err)));
      }
      data_ = static_cast<const std::uint8_t*>(p);
    }
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  MappedFile& operator=(MappedFile&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~MappedFile() { unmap(); }

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace pquant::io
