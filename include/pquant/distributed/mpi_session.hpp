// MpiSession and Communicator: the MPI process group a data-parallel run trains in.
//
// Only pquant/distributed/ includes <mpi.h>; link MPI::MPI_CXX (CMake option PQUANT_WITH_MPI).
// MpiSession initialises MPI for the program's lifetime (MPI_THREAD_FUNNELED: only the main thread
// calls MPI; oneTBB workers never do). Communicator is a private duplicate of a communicator, so
// pquant's messages never match a user's. MPI errors keep MPI's default handler
// (MPI_ERRORS_ARE_FATAL): a failed transfer ends the whole job through mpirun instead of leaving
// the other ranks waiting. A rank that fails on its own (an exception only it sees) must call
// MpiSession::abort for the same reason.
#pragma once

#include <mpi.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "pquant/core/error.hpp"

namespace pquant::distributed {

/// MPI's datatype for a C++ arithmetic type.
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return MPI_UINT64_T;
  else static_assert(sizeof(T) == 0, "mpi_type: float, double or std::uint64_t");
}

/// Checked conversion of an element count to MPI's int.
inline int mpi_count(std::size_t n, const char* where) {
  require<ValueError>(n <= static_cast<std::size_t>(INT_MAX), where, ": ", n,
                      " elements exceed MPI's int count limit");
  return static_cast<int>(n);
}

class MpiSession {
 public:
  /// Calls MPI_Init_thread unless MPI is already initialised (then the caller finalises it).
  MpiSession(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    owner_ = true;
    require<ValueError>(provided >= MPI_THREAD_FUNNELED,
                        "MpiSession: the MPI library does not provide MPI_THREAD_FUNNELED");
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }

  /// Ends every rank of the job (mpirun propagates `code`); for errors only this rank sees.
  [[noreturn]] static void abort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  bool owner_ = false;
};

class Communicator {
 public:
  /// A private duplicate of `comm` (MPI_COMM_WORLD by default); collective over `comm`.
  explicit Communicator(MPI_Comm comm = MPI_COMM_WORLD) {
    MPI_Comm_dup(comm, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  Communicator(Communicator&& o) noexcept
      : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), rank_(o.rank_), size_(o.size_) {}
  Communicator& operator=(Communicator&& o) noexcept {
    std::swap(comm_, o.comm_);
    rank_ = o.rank_;
    size_ = o.size_;
    return *this;
  }
  ~Communicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm_);
  }

  MPI_Comm get() const { return comm_; }
  std::size_t rank() const { return static_cast<std::size_t>(rank_); }
  std::size_t size() const { return static_cast<std::size_t>(size_); }
  bool is_root() const { return rank_ == 0; }

  void barrier() const { MPI_Barrier(comm_); }

  /// Every rank's `local` values, concatenated in rank order (each rank passes the same count).
  template <class T>
  std::vector<T> allgather(std::span<const T> local) const {
    std::vector<T> all(local.size() * size());
    const int n = mpi_count(local.size(), "Communicator::allgather");
    MPI_Allgather(local.data(), n, mpi_type<T>(), all.data(), n, mpi_type<T>(), comm_);
    return all;
  }

  /// The sum of one value over the ranks, added in rank order 0, 1, ..., so the result is the
  /// same bits on every rank and in every run.
  double sum_in_rank_order(double local) const {
    const std::vector<double> all = allgather(std::span<const double>(&local, 1));
    double s = 0;
    for (double v : all) s += v;
    return s;
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace pquant::distributed
