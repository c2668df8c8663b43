// Umbrella header for pquant/distributed: data-parallel training over MPI (needs <mpi.h> and
// MPI::MPI_CXX; pquant/pquant.hpp does not include it). See docs/distributed.md.
#pragma once

#include "pquant/distributed/mpi_session.hpp"
#include "pquant/distributed/ring_allreduce.hpp"
#include "pquant/distributed/data_parallel.hpp"
