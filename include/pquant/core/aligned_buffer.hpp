// AlignedBuffer<T>: an owning, zero-initialised, cache-line aligned array.
//
// The allocation is rounded up to a whole number of kAlignment-byte blocks (and the padding is
// zero), so SIMD kernels may load a full vector that starts inside the buffer without reading
// foreign memory. Only trivially copyable element types are allowed: buffers are raw storage.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "pquant/core/error.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pquant {

inline constexpr std::size_t kAlignment = 64;  // one cache line; also the widest SIMD vector
// Buffers of at least this size (weight matrices) are aligned to it and, on Linux, asked for
// transparent huge pages: a kernel streaming a DRAM-resident matrix then takes a TLB miss per
// 2 MiB instead of per 4 KiB, and the hardware prefetchers are not stopped at every 4 KiB.
inline constexpr std::size_t kHugePage = std::size_t{2} << 20;

template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedBuffer holds raw, trivially copyable data");

 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) : size_(count) {
    if (count == 0) return;
    require<ValueError>(count <= max_count(), "AlignedBuffer: count ", count, " is too large");
    bytes_ = padded_bytes(count);
    data_ = static_cast<T*>(::operator new(bytes_, std::align_val_t{alignment(bytes_)}));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Advice only: it may be refused (THP disabled), and the buffer works the same either way.
    if (bytes_ >= kHugePage) ::madvise(static_cast<void*>(data_), bytes_, MADV_HUGEPAGE);
#endif
    std::memset(static_cast<void*>(data_), 0, bytes_);
  }
  AlignedBuffer(const AlignedBuffer& other) : AlignedBuffer(other.size_) {
    if (size_ != 0) std::memcpy(static_cast<void*>(data_), other.data_, bytes_);
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        bytes_(std::exchange(other.bytes_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer other) noexcept {
    swap(other);
    return *this;
  }
  ~AlignedBuffer() {
    if (data_ != nullptr)
      ::operator delete(static_cast<void*>(data_), std::align_val_t{alignment(bytes_)});
  }

  /// Makes this `count` zeros, reusing the allocation when it is large enough (a layer's scratch
  /// whose row count changes every step, such as an expert's tokens, then costs a memset rather
  /// than fresh pages the kernel must clear).
  void assign_zeros(std::size_t count) {
    require<ValueError>(count <= max_count(), "AlignedBuffer: count ", count, " is too large");
    if (count != 0 && data_ != nullptr && padded_bytes(count) <= bytes_) {
      size_ = count;
      std::memset(static_cast<void*>(data_), 0, count * sizeof(T));
      return;
    }
    AlignedBuffer(count).swap(*this);
  }

  void swap(AlignedBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(bytes_, other.bytes_);
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Bytes actually allocated (size rounded up to the alignment).
  std::size_t allocated_bytes() const noexcept { return bytes_; }
  T& operator[](std::size_t i) noexcept { return data_[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() noexcept { return data_; }
  T* end() noexcept { return data_ + size_; }
  const T* begin() const noexcept { return data_; }
  const T* end() const noexcept { return data_ + size_; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }

 private:
  static constexpr std::size_t max_count() { return (std::size_t{1} << 48) / sizeof(T); }
  static std::size_t alignment(std::size_t bytes) {
    return bytes >= kHugePage ? kHugePage : kAlignment;
  }
  static std::size_t padded_bytes(std::size_t count) {
    return (count * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment;
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace pquant
