// ring_allreduce: sum (or mean) of a buffer over the ranks in a fixed order, on MPI point-to-point.
//
// The bandwidth-optimal ring (reduce-scatter, then all-gather) over N ranks, the buffer cut into N
// contiguous chunks of n/N elements (the first n % N chunks one longer):
//   reduce-scatter, N - 1 steps: chunk c starts at rank c and travels right; each rank adds its own
//     values to what it receives, so chunk c is summed as ((g_c + g_c+1) + g_c+2) + ... + g_c-1
//     (ranks mod N), completing on rank c - 1;
//   all-gather, N - 1 steps: the completed chunks travel right and are copied, not re-added.
// Why not MPI_Allreduce: the MPI standard fixes neither the algorithm nor the order of additions,
// and Open MPI picks among several by message size, rank count and MCA settings, so floating-point
// results may change with any of them. Here the order is a function of N alone: the same bits in
// every run, and on every rank (each element is added on exactly one rank, then copied).
// Each rank sends and receives 2 (N - 1) / N of the buffer, the least any all-reduce can.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "pquant/distributed/mpi_session.hpp"

namespace pquant::distributed {

enum class Reduction { kSum, kMean };

/// First element of chunk c when n elements are cut into `parts` chunks (the first n % parts one
/// longer); chunk c is [chunk_begin(c), chunk_begin(c + 1)).
inline std::size_t chunk_begin(std::size_t n, std::size_t parts, std::size_t c) {
  return c * (n / parts) + std::min(c, n % parts);
}

/// In place: every rank's `data` becomes the element-wise sum (kMean: sum / N) over the ranks of
/// `comm`, in the order stated above. Collective: every rank calls it with the same size.
template <class T>
void ring_allreduce(std::span<T> data, const Communicator& comm, Reduction op = Reduction::kSum) {
  const std::size_t ranks = comm.size(), n = data.size();
  if (ranks == 1) return;
  const std::size_t r = comm.rank(), right = (r + 1) % ranks, left = (r + ranks - 1) % ranks;
  const auto begin = [&](std::size_t c) { return chunk_begin(n, ranks, c % ranks); };
  const auto count = [&](std::size_t c) {
    return chunk_begin(n, ranks, c % ranks + 1) - chunk_begin(n, ranks, c % ranks);
  };
  mpi_count(count(0), "ring_allreduce");  // the largest chunk fits MPI's int count
  std::vector<T> incoming(count(0));
  const MPI_Datatype type = mpi_type<T>();
  const int tag = 0x5071;  // the Communicator is private, any fixed tag is safe

  // Step s: send chunk r - s (holding g_{r-s} + ... + g_r), receive chunk r - s - 1 from the left.
  for (std::size_t s = 0; s + 1 < ranks; ++s) {
    const std::size_t send = r + ranks - s, recv = r + ranks - s - 1;
    MPI_Sendrecv(data.data() + begin(send), static_cast<int>(count(send)), type,
                 static_cast<int>(right), tag, incoming.data(), static_cast<int>(count(recv)), type,
                 static_cast<int>(left), tag, comm.get(), MPI_STATUS_IGNORE);
    T* acc = data.data() + begin(recv);
    for (std::size_t i = 0; i < count(recv); ++i) acc[i] = incoming[i] + acc[i];
  }
  // Rank r now holds chunk r + 1 complete.
  const std::size_t mine = r + 1;
  if (op == Reduction::kMean) {
    const T divisor = static_cast<T>(ranks);
    T* p = data.data() + begin(mine);
    for (std::size_t i = 0; i < count(mine); ++i) p[i] = p[i] / divisor;
  }
  // Step s: send chunk r + 1 - s (complete), receive chunk r - s in place.
  for (std::size_t s = 0; s + 1 < ranks; ++s) {
    const std::size_t send = mine + ranks - s, recv = r + ranks - s;
    MPI_Sendrecv(data.data() + begin(send), static_cast<int>(count(send)), type,
                 static_cast<int>(right), tag, data.data() + begin(recv),
                 static_cast<int>(count(recv)), type, static_cast<int>(left), tag, comm.get(),
                 MPI_STATUS_IGNORE);
  }
}

}  // namespace pquant::distributed
