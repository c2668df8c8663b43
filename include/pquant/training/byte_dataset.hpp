// ByteDataset: byte-level language-modelling data over any text.
//
// Tokens are the bytes themselves (vocabulary 256). The last `val_fraction` of the bytes (10% by
// default) is held out for validation; training draws contiguous windows of T + 1 bytes at
// uniformly random starts inside the training part (inputs = window[0, T), targets = window[1, T]),
// from an Rng the caller owns (so the stream is deterministic by seed and resumable).
// Validation walks the whole held-out tail in consecutive windows: window k covers inputs
// val[kT, kT + T) and targets shifted by one; the last window may be shorter. Every byte of the
// tail after the first is predicted exactly once, so the figure is deterministic and comparable
// across variants.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/layers/init.hpp"

namespace pquant {

inline constexpr std::size_t kByteVocabulary = 256;

/// One batch of B sequences of T tokens: inputs[b * T + t] predicts targets[b * T + t].
struct TokenBatch {
  std::size_t batch = 0;
  std::size_t seq_len = 0;
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> targets;
};

class ByteDataset {
 public:
  /// `text` is any byte string; the tail `val_fraction` of it (rounded down, in bytes) is held out.
  explicit ByteDataset(std::string_view text, double val_fraction = 0.1)
      : bytes_(text.begin(), text.end()) {
    require<ValueError>(val_fraction > 0.0 && val_fraction < 1.0,
                        "ByteDataset: argument 'val_fraction' must be in (0, 1), got ",
                        val_fraction);
    const auto val = static_cast<std::size_t>(static_cast<double>(bytes_.size()) * val_fraction);
    train_size_ = bytes_.size() - val;
    require<ValueError>(val >= 2 && train_size_ >= 2, "ByteDataset: argument 'text' has ",
                        bytes_.size(), " bytes, too few for a training and a validation part");
  }

  /// Reads a whole file (IoError if it cannot be read).
  static ByteDataset from_file(const std::string& path, double val_fraction = 0.1) {
    const AlignedBuffer<std::uint8_t> data = io::read_file(path);
    return ByteDataset(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()),
                       val_fraction);
  }

  std::size_t size() const { return bytes_.size(); }
  std::size_t train_size() const { return train_size_; }
  std::size_t val_size() const { return bytes_.size() - train_size_; }
  std::span<const std::uint8_t> train_bytes() const { return {bytes_.data(), train_size_}; }
  std::span<const std::uint8_t> val_bytes() const {
    return {bytes_.data() + train_size_, val_size()};
  }

  /// B random contiguous training windows of T + 1 bytes (starts drawn from `rng`, in order b =
  /// 0..B-1).
  void sample_train(Rng& rng, std::size_t batch, std::size_t seq_len, TokenBatch& out) const {
    require<ValueError>(batch > 0 && seq_len > 0,
                        "ByteDataset::sample_train: 'batch' and 'seq_len' must be > 0");
    require<ValueError>(seq_len + 1 <= train_size_,
                        "ByteDataset::sample_train: argument 'seq_len' (", seq_len,
                        ") needs at least ", seq_len + 1, " training bytes, have ", train_size_);
    out.batch = batch;
    out.seq_len = seq_len;
    out.inputs.resize(batch * seq_len);
    out.targets.resize(batch * seq_len);
    const std::size_t starts = train_size_ - seq_len;  // valid starts: [0, train_size - T - 1]
    for (std::size_t b = 0; b < batch; ++b) {
      const std::size_t s = rng.below(starts);
      for (std::size_t t = 0; t < seq_len; ++t) {
        out.inputs[b * seq_len + t] = bytes_[s + t];
        out.targets[b * seq_len + t] = bytes_[s + t + 1];
      }
    }
  }

  /// Number of consecutive validation windows of length (at most) T.
  std::size_t val_windows(std::size_t seq_len) const {
    require<ValueError>(seq_len > 0, "ByteDataset::val_windows: 'seq_len' must be > 0");
    const std::size_t predicted = val_size() - 1;  // the first byte of the tail is never a target
    return (predicted + seq_len - 1) / seq_len;
  }

  /// Validation window k as a batch of one sequence (the last one may be shorter than T).
  void val_window(std::size_t k, std::size_t seq_len, TokenBatch& out) const {
    require<ValueError>(k < val_windows(seq_len),
                        "ByteDataset::val_window: argument 'k' must be < ", val_windows(seq_len),
                        ", got ", k);
    const std::size_t begin = train_size_ + k * seq_len;
    const std::size_t len = std::min(seq_len, bytes_.size() - 1 - begin);
    out.batch = 1;
    out.seq_len = len;
    out.inputs.resize(len);
    out.targets.resize(len);
    for (std::size_t t = 0; t < len; ++t) {
      out.inputs[t] = bytes_[begin + t];
      out.targets[t] = bytes_[begin + t + 1];
    }
  }

 private:
  std::vector<std::uint8_t> bytes_;
  std::size_t train_size_ = 0;
};

}  // namespace pquant
