// Training checkpoints: a safetensors file holding everything a resumed run needs.
//
// Tensors (all little-endian, as safetensors):
//   <param>             F32 [rows, cols]  latent (full-precision) weights, one per ParameterStore entry
//   adamw.m.<param>     F32 [rows, cols]  AdamW first moment
//   adamw.v.<param>     F32 [rows, cols]  AdamW second moment
//   adamw.step          U64 [1]           AdamW update count (bias correction)
//   training.step       U64 [1]           next step to run (the schedule position)
// __metadata__ (strings):
//   pquant.format "pquant-checkpoint", pquant.format_version "1"
//   pquant.rng          data-sampling Rng state (decimal)
//   pquant.trainer      the trainer's settings as JSON (schedule, batch, ...), compared on resume
//   pquant.meta         free text of the application (train_lm: its configuration as JSON)
//   pquant.checksum     FNV-1a-64 (16 hex digits) of every other metadata entry and every tensor's
//                       name, dtype, shape and bytes: a flipped bit anywhere is a FormatError
// Reading is all or nothing: the file must be a checkpoint of exactly the model being restored
// (every parameter present with its shape, no other tensor), every value finite (a checkpoint of
// a diverged run is refused naming the tensor), and nothing is modified unless all of it is valid.
// A packed model file or a file of the old "PQCKPT01" format gets a message saying what it is.
// Files are written through io::AtomicFile (temp file + fsync + rename): a crash or an error while
// saving leaves the previous checkpoint intact; temp files a killed save left behind
// (<path>.tmp.XXXXXX) are removed by the next save to the same path.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/layers/init.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/training/adamw.hpp"

namespace pquant {

inline constexpr std::string_view kCheckpointFormat = "pquant-checkpoint";
inline constexpr std::string_view kCheckpointFormatVersion = "1";

/// Everything besides the parameter and optimizer arenas that a resumed run needs.
struct TrainingState {
  std::uint64_t step = 0;  // next step to run (the schedule position)
  std::uint64_t rng = 0;   // Rng::state() of the data-sampling generator
  std::string meta;        // free text written by the application (e.g. its configuration as JSON)
  std::string trainer;     // the Trainer's settings as JSON (empty when saved without a Trainer)
};

namespace detail {

inline constexpr std::string_view kMomentPrefix[2] = {"adamw.m.", "adamw.v."};
inline constexpr std::string_view kAdamStepTensor = "adamw.step";
inline constexpr std::string_view kStepTensor = "training.step";
inline constexpr std::string_view kChecksumKey = "pquant.checksum";

inline void fnv1a64(std::uint64_t& h, std::span<const std::uint8_t> bytes) {
  for (std::uint8_t b : bytes) h = (h ^ b) * 0x100000001b3ULL;
}
inline void fnv1a64(std::uint64_t& h, std::string_view s) {
  fnv1a64(h, {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()});
  const std::uint8_t nul = 0;
  fnv1a64(h, {&nul, 1});
}

struct DigestTensor {
  std::string_view name;
  io::DType dtype;
  const std::vector<std::uint64_t>* shape;
  std::span<const std::uint8_t> bytes;
};

/// The checksum both the writer and the reader compute: metadata (sorted by key, the checksum
/// itself excluded), then tensors sorted by name.
inline std::string checkpoint_digest(const std::map<std::string, std::string>& metadata,
                                     std::vector<DigestTensor> tensors) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& [key, value] : metadata) {
    if (key == kChecksumKey) continue;
    fnv1a64(h, key);
    fnv1a64(h, value);
  }
  std::sort(tensors.begin(), tensors.end(),
            [](const DigestTensor& a, const DigestTensor& b) { return a.name < b.name; });
  for (const DigestTensor& t : tensors) {
    fnv1a64(h, t.name);
    fnv1a64(h, io::dtype_name(t.dtype));
    for (std::uint64_t d : *t.shape) {
      std::uint8_t le[8];
      for (int i = 0; i < 8; ++i) le[i] = static_cast<std::uint8_t>(d >> (8 * i));
      fnv1a64(h, le);
    }
    fnv1a64(h, t.bytes);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

inline std::span<const std::uint8_t> as_bytes(std::span<const float> f) {
  return {reinterpret_cast<const std::uint8_t*>(f.data()), f.size_bytes()};
}

inline std::vector<std::uint8_t> u64_bytes(std::uint64_t v) {
  std::vector<std::uint8_t> b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  return b;
}

/// Builds the safetensors writer for a checkpoint (tensors and metadata, checksum included).
inline io::SafetensorsWriter checkpoint_writer(const ParameterStore& store, const AdamW& opt,
                                               const TrainingState& state) {
  require<ShapeError>(opt.first_moment().size() == store.values().size(),
                      "save_checkpoint: argument 'opt' was built for ", opt.first_moment().size(),
                      " floats, the store has ", store.values().size());
  std::map<std::string, std::string> meta = {
      {"pquant.format", std::string(kCheckpointFormat)},
      {"pquant.format_version", std::string(kCheckpointFormatVersion)},
      {"pquant.rng", std::to_string(state.rng)},
      {"pquant.trainer", state.trainer},
      {"pquant.meta", state.meta}};
  std::vector<std::string> names;
  std::vector<std::vector<std::uint64_t>> shapes;
  std::vector<std::span<const std::uint8_t>> data;
  std::vector<io::DType> dtypes;
  const std::span<const float> arenas[3] = {store.values(), opt.first_moment(),
                                            opt.second_moment()};
  for (const ParamInfo& p : store.infos()) {
    // A checkpoint of a diverged run would only fail when resumed: refuse to write one.
    for (int a = 0; a < 3; ++a) {
      const std::span<const float> values = arenas[a].subspan(p.offset, p.size());
      const auto bad = std::find_if(values.begin(), values.end(),
                                    [](float v) { return !std::isfinite(v); });
      require<ValueError>(bad == values.end(), "save_checkpoint: ",
                          a == 0 ? "parameter '" : "the optimizer state of '", p.name,
                          "' holds a non-finite value at element ", bad - values.begin(),
                          " (the run diverged); nothing was written");
      names.push_back(a == 0 ? p.name : std::string(kMomentPrefix[a - 1]) + p.name);
      shapes.push_back({p.rows, p.cols});
      data.push_back(as_bytes(values));
      dtypes.push_back(io::DType::kF32);
    }
  }
  const std::vector<std::uint8_t> adam_step = u64_bytes(opt.steps()), step = u64_bytes(state.step);
  names.emplace_back(kAdamStepTensor);
  names.emplace_back(kStepTensor);
  for (const auto* b : {&adam_step, &step}) {
    shapes.push_back({1});
    data.emplace_back(*b);
    dtypes.push_back(io::DType::kU64);
  }
  std::vector<DigestTensor> digest;
  for (std::size_t i = 0; i < names.size(); ++i)
    digest.push_back({names[i], dtypes[i], &shapes[i], data[i]});
  meta[std::string(kChecksumKey)] = checkpoint_digest(meta, std::move(digest));

  io::SafetensorsWriter w;
  for (auto& [k, v] : meta) w.set_metadata(k, v);
  for (std::size_t i = 0; i < names.size(); ++i) w.add(names[i], dtypes[i], shapes[i], data[i]);
  return w;
}

/// Removes `<path>.tmp.XXXXXX` files (AtomicFile's temp names for this path) that a killed save
/// left behind. Best effort: a file that cannot be removed is left alone.
inline void remove_stale_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() == prefix.size() + 6 && name.starts_with(prefix) &&
        it->is_regular_file(ec)) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

}  // namespace detail

/// Serialises the training state (see the layout above) to the bytes of a safetensors file.
inline std::vector<std::uint8_t> checkpoint_bytes(const ParameterStore& store, const AdamW& opt,
                                                  const TrainingState& state) {
  return detail::checkpoint_writer(store, opt, state).serialize();
}

/// Throws IoError unless a checkpoint can be written to `path`: not a directory, its directory
/// exists and accepts a new file. Lets a run refuse a bad target before it trains.
inline void check_checkpoint_target(const std::string& path) {
  namespace fs = std::filesystem;
  require<IoError>(!path.empty(), "check_checkpoint_target: the checkpoint path is empty");
  std::error_code ec;
  require<IoError>(!fs::is_directory(path, ec), "cannot write a checkpoint to '", path,
                   "': it is a directory (give a file name inside it)");
  const fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : ".";
  require<IoError>(fs::is_directory(parent, ec), "cannot write a checkpoint to '", path,
                   "': the directory '", parent.string(), "' does not exist");
  io::AtomicFile probe(path);  // IoError naming the reason if the directory refuses a new file
  probe.abandon();
}

/// Writes a checkpoint atomically; IoError if the file system refuses, ValueError (and nothing
/// written) if a value is not finite.
inline void save_checkpoint(const std::string& path, const ParameterStore& store, const AdamW& opt,
                            const TrainingState& state) {
  const io::SafetensorsWriter w = detail::checkpoint_writer(store, opt, state);
  detail::remove_stale_temp_files(path);
  w.save(path);
}

/// A parsed and verified checkpoint: its TrainingState is readable before anything is restored
/// (generate --export reads the model configuration from it first).
class CheckpointReader {
 public:
  /// Parses and verifies checkpoint bytes (not copied: they must outlive the reader).
  static CheckpointReader parse(std::span<const std::uint8_t> bytes,
                                const std::string& path = "<memory>") {
    CheckpointReader r;
    r.path_ = path;
    r.init(bytes);
    return r;
  }
  /// Reads and verifies a checkpoint file (IoError if unreadable, FormatError if invalid).
  static CheckpointReader open(const std::string& path) {
    CheckpointReader r;
    r.path_ = path;
    r.owned_ = io::read_file(path);
    r.init({r.owned_.data(), r.owned_.size()});
    return r;
  }

  CheckpointReader(CheckpointReader&&) noexcept = default;
  CheckpointReader& operator=(CheckpointReader&&) noexcept = default;
  CheckpointReader(const CheckpointReader&) = delete;  // the view may point into owned_
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const { return path_; }
  const TrainingState& state() const { return state_; }
  std::uint64_t adam_steps() const { return adam_steps_; }
  /// Elements of the latent-weight tensors (every tensor but the moments and the counters): what
  /// a model's parameter count must match, known before the model is built.
  std::uint64_t parameter_elements() const {
    std::uint64_t n = 0;
    for (const io::TensorInfo& t : view_.tensors())
      if (t.dtype == io::DType::kF32 && !t.name.starts_with(detail::kMomentPrefix[0]) &&
          !t.name.starts_with(detail::kMomentPrefix[1]))
        n += t.elements();
    return n;
  }

  /// Restores `store` values and `opt` moments and step count: the checkpoint must hold exactly
  /// the store's parameters with their shapes, all finite. Nothing is modified unless it does.
  void restore(ParameterStore& store, AdamW& opt) const {
    require<ShapeError>(opt.first_moment().size() == store.values().size(),
                        "load_checkpoint: argument 'opt' was built for ", opt.first_moment().size(),
                        " floats, the store has ", store.values().size());
    const std::size_t expected = 3 * store.infos().size() + 2;
    if (view_.tensors().size() != expected) {
      for (const io::TensorInfo& t : view_.tensors())
        require<FormatError>(known_tensor(store, t.name), "load_checkpoint: '", path_,
                             "' holds tensor '", t.name, "', which the model does not have");
      fail("holds ", view_.tensors().size(), " tensors, the model needs ", expected);
    }
    struct Copy {
      std::span<const std::uint8_t> from;
      std::size_t offset;
    };
    std::vector<Copy> copies[3];
    for (const ParamInfo& p : store.infos()) {
      for (int a = 0; a < 3; ++a) {
        const std::string name = a == 0 ? p.name : std::string(detail::kMomentPrefix[a - 1]) + p.name;
        const io::TensorInfo* t = view_.find(name);
        if (t == nullptr) fail("lacks tensor '", name, "' of the model");
        if (t->dtype != io::DType::kF32 || t->shape != std::vector<std::uint64_t>{p.rows, p.cols})
          fail("tensor '", name, "' is ", io::dtype_name(t->dtype), " ",
               io::detail::shape_string(t->shape), ", the model's is F32 [", p.rows, ", ", p.cols,
               "]");
        const std::span<const std::uint8_t> bytes = view_.bytes(*t);
        for (std::size_t i = 0; i < p.size(); ++i) {
          float v;
          std::memcpy(&v, bytes.data() + 4 * i, 4);
          if (!std::isfinite(v) || (a == 2 && v < 0.0f))
            fail("tensor '", name, "' holds ", v, " at element ", i,
                 a == 2 ? " (second moments must be finite and >= 0)" : " (must be finite)",
                 "; a checkpoint of a diverged run cannot be resumed");
        }
        copies[a].push_back({bytes, p.offset});
      }
    }
    // Valid: commit.
    const std::span<float> arenas[3] = {store.values(), opt.first_moment(), opt.second_moment()};
    for (int a = 0; a < 3; ++a)
      for (const Copy& c : copies[a])
        std::memcpy(arenas[a].data() + c.offset, c.from.data(), c.from.size());
    opt.set_steps(adam_steps_);
  }

 private:
  CheckpointReader() = default;

  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    throw FormatError(::pquant::detail::concat("pquant: load_checkpoint: '", path_, "' ",
                                               std::forward<Parts>(parts)...));
  }

  static bool known_tensor(const ParameterStore& store, std::string_view name) {
    if (name == detail::kAdamStepTensor || name == detail::kStepTensor) return true;
    for (std::string_view prefix : detail::kMomentPrefix)
      if (name.starts_with(prefix)) name.remove_prefix(prefix.size());
    for (const ParamInfo& p : store.infos())
      if (p.name == name) return true;
    return false;
  }

  std::uint64_t u64_tensor(std::string_view name) const {
    const io::TensorInfo* t = view_.find(name);
    if (t == nullptr) fail("lacks tensor '", name, "'");
    if (t->dtype != io::DType::kU64 || t->shape != std::vector<std::uint64_t>{1})
      fail("tensor '", name, "' must be U64 [1]");
    return io::detail::read_u64_le(view_.bytes(*t).data());
  }

  void init(std::span<const std::uint8_t> bytes) {
    if (bytes.size() >= 8 && std::memcmp(bytes.data(), "PQCKPT01", 8) == 0)
      fail("is a checkpoint in the retired PQCKPT01 format, which this version no longer reads; "
           "train again (or export it with the version that wrote it)");
    try {
      view_ = io::SafetensorsView::parse(bytes);
    } catch (const FormatError& e) {
      fail("is not a training checkpoint (not a valid safetensors file: ", e.what(), ")");
    }
    const auto& meta = view_.metadata();
    const auto format = meta.find("pquant.format");
    if (format == meta.end() || format->second != kCheckpointFormat) {
      if (format != meta.end() && format->second == "pquant-packed")
        fail("is a packed model file (for inference), not a training checkpoint: it holds no "
             "latent weights or optimizer state, so it cannot be resumed; resume from the "
             "checkpoint it was exported from");
      fail("is not a training checkpoint (its __metadata__ 'pquant.format' is ",
           format == meta.end() ? std::string("missing") : "'" + format->second + "'",
           ", expected '", kCheckpointFormat, "')");
    }
    for (const auto& [key, value] : meta) {
      static constexpr std::string_view kKeys[] = {"pquant.format", "pquant.format_version",
                                                   "pquant.rng",    "pquant.trainer",
                                                   "pquant.meta",   detail::kChecksumKey};
      if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys))
        fail("has an unknown __metadata__ key '", key, "'");
    }
    if (view_.meta("pquant.format_version") != kCheckpointFormatVersion)
      fail("has checkpoint format version '", view_.meta("pquant.format_version"),
           "', this version reads '", kCheckpointFormatVersion, "'");
    std::vector<detail::DigestTensor> digest;
    for (const io::TensorInfo& t : view_.tensors())
      digest.push_back({t.name, t.dtype, &t.shape, view_.bytes(t)});
    if (view_.meta(detail::kChecksumKey) != detail::checkpoint_digest(meta, std::move(digest)))
      fail("is corrupt (checksum mismatch)");
    const std::string& rng = view_.meta("pquant.rng");
    const auto [end, ec] = std::from_chars(rng.data(), rng.data() + rng.size(), state_.rng);
    if (ec != std::errc() || end != rng.data() + rng.size() || rng.empty())
      fail("has a bad __metadata__ 'pquant.rng' ('", rng, "')");
    state_.meta = view_.meta("pquant.meta");
    state_.trainer = view_.meta("pquant.trainer");
    state_.step = u64_tensor(detail::kStepTensor);
    adam_steps_ = u64_tensor(detail::kAdamStepTensor);
    if (adam_steps_ > state_.step)
      fail("has ", adam_steps_, " optimizer updates but only ", state_.step, " steps");
  }

  std::string path_;
  AlignedBuffer<std::uint8_t> owned_;
  io::SafetensorsView view_;
  TrainingState state_;
  std::uint64_t adam_steps_ = 0;
};

/// Restores `store` values, `opt` moments and step count from checkpoint bytes; returns the rest.
/// FormatError for a corrupt, truncated or foreign file, or one written for a different parameter
/// layout. Nothing is modified unless the whole checkpoint is valid.
inline TrainingState restore_checkpoint(std::span<const std::uint8_t> bytes, ParameterStore& store,
                                        AdamW& opt, const std::string& path = "<memory>") {
  const CheckpointReader r = CheckpointReader::parse(bytes, path);
  r.restore(store, opt);
  return r.state();
}

/// Reads and restores a checkpoint file (IoError if unreadable, FormatError if invalid).
inline TrainingState load_checkpoint(const std::string& path, ParameterStore& store, AdamW& opt) {
  const CheckpointReader r = CheckpointReader::open(path);
  r.restore(store, opt);
  return r.state();
}

}  // namespace pquant
