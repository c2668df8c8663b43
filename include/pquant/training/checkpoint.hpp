// Training checkpoints: latent weights, AdamW moments and step count, schedule position, RNG.
//
// Layout (little-endian, as written by this machine; a foreign byte order fails the magic check):
//   "PQCKPT01"  u32 version(1)  string meta
//   u64 tensors, then per tensor: string name, u64 offset, u64 rows, u64 cols, u8 role
//   u64 arena floats, f32 values[arena], f32 m[arena], f32 v[arena]
//   u64 adam_steps, u64 step, u64 rng
//   u64 FNV-1a-64 of every preceding byte
// (string = u64 length + bytes). The tensor table must match the model being restored exactly, so
// a checkpoint of another variant or size is a FormatError, as is any truncation or bit flip.
// Files are written through io::AtomicFile (temp file + fsync + rename): a crash or an error while
// saving leaves the previous checkpoint intact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/layers/init.hpp"

namespace pquant {

/// Everything besides the arenas that a resumed run needs.
struct TrainingState {
  std::uint64_t step = 0;  // next step to run (the schedule position)
  std::uint64_t rng = 0;   // Rng::state() of the data-sampling generator
  std::string meta;        // free text written by the application (e.g. its configuration as JSON)
};

namespace detail {

inline constexpr char kCheckpointMagic[8] = {'P', 'Q', 'C', 'K', 'P', 'T', '0', '1'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

inline std::uint64_t fnv1a64(std::span<const std::uint8_t> bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ULL;
  return h;
}

class ByteWriter {
 public:
  void raw(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  template <class T>
  void pod(T v) {
    raw(&v, sizeof v);
  }
  void str(std::string_view s) {
    pod<std::uint64_t>(s.size());
    raw(s.data(), s.size());
  }
  void floats(std::span<const float> f) { raw(f.data(), f.size_bytes()); }
  std::vector<std::uint8_t> out;
};

class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> in, std::string path)
      : in_(in), path_(std::move(path)) {}
  void raw(void* p, std::size_t n) {
    require<FormatError>(n <= in_.size() - pos_, "load_checkpoint: '", path_,
                         "' is truncated at byte ", pos_, " (needed ", n, " more bytes)");
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
  }
  template <class T>
  T pod() {
    T v;
    raw(&v, sizeof v);
    return v;
  }
  std::string str(std::size_t max_len) {
    const auto n = pod<std::uint64_t>();
    require<FormatError>(n <= max_len && n <= in_.size() - pos_, "load_checkpoint: '", path_,
                         "' has an implausible string length ", n, " at byte ", pos_);
    std::string s(n, '\0');
    raw(s.data(), n);
    return s;
  }
  void floats(std::span<float> f) { raw(f.data(), f.size_bytes()); }
  std::size_t pos() const { return pos_; }

 private:
  std::span<const std::uint8_t> in_;
  std::string path_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// Serialises the training state (see the layout above) to bytes.
inline std::vector<std::uint8_t> checkpoint_bytes(const ParameterStore& store, const AdamW& opt,
                                                  const TrainingState& state) {
  require<ShapeError>(opt.first_moment().size() == store.values().size(),
                      "save_checkpoint: argument 'opt' was built for ", opt.first_moment().size(),
                      " floats, the store has ", store.values().size());
  detail::ByteWriter w;
  w.raw(detail::kCheckpointMagic, 8);
  w.pod(detail::kCheckpointVersion);
  w.str(state.meta);
  w.pod<std::uint64_t>(store.infos().size());
  for (const ParamInfo& p : store.infos()) {
    w.str(p.name);
    w.pod<std::uint64_t>(p.offset);
    w.pod<std::uint64_t>(p.rows);
    w.pod<std::uint64_t>(p.cols);
    w.pod<std::uint8_t>(static_cast<std::uint8_t>(p.role));
  }
  w.pod<std::uint64_t>(store.values().size());
  w.floats(store.values());
  w.floats(opt.first_moment());
  w.floats(opt.second_moment());
  w.pod<std::uint64_t>(opt.steps());
  w.pod<std::uint64_t>(state.step);
  w.pod<std::uint64_t>(state.rng);
  w.pod(detail::fnv1a64(w.out));
  return std::move(w.out);
}

/// Writes a checkpoint atomically; IoError if the file system refuses.
inline void save_checkpoint(const std::string& path, const ParameterStore& store, const AdamW& opt,
                            const TrainingState& state) {
  const std::vector<std::uint8_t> bytes = checkpoint_bytes(store, opt, state);
  io::write_file_atomic(path, bytes);
}

/// Restores `store` values, `opt` moments and step count from checkpoint bytes; returns the rest.
/// FormatError for a corrupt or truncated file, or one written for a different parameter layout.
/// Nothing is modified unless the whole checkpoint is valid.
inline TrainingState restore_checkpoint(std::span<const std::uint8_t> bytes, ParameterStore& store,
                                        AdamW& opt, const std::string& path = "<memory>") {
  require<FormatError>(bytes.size() >= 8 + 4 + 8, "load_checkpoint: '", path, "' is too short (",
                       bytes.size(), " bytes) to be a checkpoint");
  require<FormatError>(std::memcmp(bytes.data(), detail::kCheckpointMagic, 8) == 0,
                       "load_checkpoint: '", path, "' is not a pquant checkpoint (bad magic)");
  std::uint64_t stored_sum;
  std::memcpy(&stored_sum, bytes.data() + bytes.size() - 8, 8);
  require<FormatError>(detail::fnv1a64(bytes.first(bytes.size() - 8)) == stored_sum,
                       "load_checkpoint: '", path, "' is corrupt (checksum mismatch)");
  detail::ByteReader r(bytes.first(bytes.size() - 8), path);
  char magic[8];
  r.raw(magic, 8);
  const auto version = r.pod<std::uint32_t>();
  require<FormatError>(version == detail::kCheckpointVersion, "load_checkpoint: '", path,
                       "' has version ", version, ", expected ", detail::kCheckpointVersion);
  TrainingState state;
  state.meta = r.str(1 << 20);
  const auto tensors = r.pod<std::uint64_t>();
  require<FormatError>(tensors == store.infos().size(), "load_checkpoint: '", path, "' holds ",
                       tensors, " tensors, the model has ", store.infos().size());
  for (const ParamInfo& p : store.infos()) {
    const std::string name = r.str(4096);
    const auto offset = r.pod<std::uint64_t>(), rows = r.pod<std::uint64_t>(),
               cols = r.pod<std::uint64_t>();
    const auto role = r.pod<std::uint8_t>();
    require<FormatError>(name == p.name && offset == p.offset && rows == p.rows && cols == p.cols &&
                             role == static_cast<std::uint8_t>(p.role),
                         "load_checkpoint: '", path, "' tensor '", name, "' [", rows, "x", cols,
                         "] does not match the model's '", p.name, "' [", p.rows, "x", p.cols, "]");
  }
  const auto arena = r.pod<std::uint64_t>();
  require<FormatError>(arena == store.values().size() && arena == opt.first_moment().size(),
                       "load_checkpoint: '", path, "' has an arena of ", arena,
                       " floats, the model has ", store.values().size());
  std::vector<float> values(arena), m(arena), v(arena);
  r.floats(values);
  r.floats(m);
  r.floats(v);
  const auto adam_steps = r.pod<std::uint64_t>();
  state.step = r.pod<std::uint64_t>();
  state.rng = r.pod<std::uint64_t>();
  require<FormatError>(r.pos() == bytes.size() - 8, "load_checkpoint: '", path, "' has ",
                       bytes.size() - 8 - r.pos(), " unexpected trailing bytes");
  // Valid: commit.
  std::memcpy(store.values().data(), values.data(), arena * sizeof(float));
  std::memcpy(opt.first_moment().data(), m.data(), arena * sizeof(float));
  std::memcpy(opt.second_moment().data(), v.data(), arena * sizeof(float));
  opt.set_steps(adam_steps);
  return state;
}

/// Reads and restores a checkpoint file (IoError if unreadable, FormatError if invalid).
inline TrainingState load_checkpoint(const std::string& path, ParameterStore& store, AdamW& opt) {
  const AlignedBuffer<std::uint8_t> bytes = io::read_file(path);
  return restore_checkpoint(std::span<const std::uint8_t>(bytes.data(), bytes.size()), store, opt,
                            path);
}

}  // namespace pquant
