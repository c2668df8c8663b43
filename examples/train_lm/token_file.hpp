// Pre-tokenized training data as llm.c and nanoGPT write it: little-endian uint16 token ids.
//
//   raw (nanoGPT's train.bin):  the ids, 2 bytes each, nothing else;
//   llm.c:                      a header of 256 little-endian int32 (header[0] = 20240520, the
//                               magic; header[1] = 1, the version; header[2] = the token count),
//                               then the ids as uint16.
// A file whose first int32 is llm.c's magic is read as llm.c's format (its size must then match
// the header's count); any other file of even size is raw. llm.c's uint32 variant (magic
// 20240801, LLaMA 3 vocabularies) is refused: pquant's token ids are at most 16 bits here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"

namespace train_lm {

inline constexpr std::int32_t kLlmcMagic = 20240520;
inline constexpr std::int32_t kLlmcMagicU32 = 20240801;
inline constexpr std::size_t kLlmcHeaderBytes = 256 * 4;

struct TokenFile {
  std::vector<std::uint16_t> ids;
  bool llmc_header = false;
};

inline std::uint32_t read_le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

/// Reads a token file (IoError if unreadable, FormatError if its size or header is wrong).
inline TokenFile read_token_file(const std::string& path) {
  using pquant::FormatError;
  using pquant::require;
  const pquant::AlignedBuffer<std::uint8_t> data = pquant::io::read_file(path);
  const std::uint8_t* p = data.data();
  std::size_t n = data.size();
  TokenFile f;
  const auto magic = n >= 4 ? static_cast<std::int32_t>(read_le32(p)) : 0;
  require<FormatError>(magic != kLlmcMagicU32, "token file '", path,
                       "' is an llm.c file of uint32 tokens (magic 20240801); only uint16 token "
                       "ids are supported");
  if (magic == kLlmcMagic) {
    require<FormatError>(n >= kLlmcHeaderBytes, "token file '", path,
                         "' starts with llm.c's magic 20240520 but is shorter than its ",
                         kLlmcHeaderBytes, "-byte header");
    const std::uint32_t version = read_le32(p + 4), count = read_le32(p + 8);
    require<FormatError>(version == 1, "token file '", path, "': llm.c header version ", version,
                         ", expected 1 (uint16 tokens)");
    require<FormatError>(n - kLlmcHeaderBytes == 2 * static_cast<std::size_t>(count),
                         "token file '", path, "': its llm.c header announces ", count, " tokens (",
                         2 * static_cast<std::size_t>(count), " bytes), the file has ",
                         n - kLlmcHeaderBytes, " bytes after the header");
    p += kLlmcHeaderBytes;
    n -= kLlmcHeaderBytes;
    f.llmc_header = true;
  }
  require<FormatError>(n % 2 == 0, "token file '", path, "' has an odd size (", n,
                       " bytes): expected little-endian uint16 token ids");
  f.ids.resize(n / 2);
  for (std::size_t i = 0; i < f.ids.size(); ++i)
    f.ids[i] = static_cast<std::uint16_t>(p[2 * i] | p[2 * i + 1] << 8);
  return f;
}

}  // namespace train_lm
