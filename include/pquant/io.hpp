// File I/O: atomic writes, memory-mapped reads and the safetensors model-file format.
// safetensors.hpp needs nlohmann-json (find_package(nlohmann_json), nlohmann_json::nlohmann_json).
#pragma once

#include "pquant/io/atomic_file.hpp"
#include "pquant/io/mapped_file.hpp"
#include "pquant/io/safetensors.hpp"
