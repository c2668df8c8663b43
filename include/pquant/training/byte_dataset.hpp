// ByteDataset: byte-level language-modelling data over any text, or over pre-tokenized ids.
//
// Tokens are the bytes themselves (vocabulary 256), or, built with from_tokens, token ids below a
// given vocabulary (a BPE tokenizer's output, as llm.c and nanoGPT store it: uint16); "bytes" below
// means tokens then. The last `val_fraction` of the bytes (10% by default) is held out for
// validation; training draws contiguous windows of T + 1 bytes at uniformly random starts inside
// the training part (inputs = window[0, T), targets = window[1, T]), from an Rng the caller owns
// (so the stream is deterministic by seed and resumable). Validation walks the whole held-out tail
// in consecutive windows: window k covers inputs val[kT, kT + T) and targets shifted by one; the
// last window may be shorter. Every byte of the tail after the first is predicted exactly once, so
// the figure is deterministic and comparable across variants.
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
    split(bytes_.size(), val_fraction);
  }

  /// Pre-tokenized data: ids below `vocab` (ValueError naming the first id that is not); the tail
  /// `val_fraction` of the ids is held out.
  static ByteDataset from_tokens(std::vector<std::uint16_t> ids, std::size_t vocab,
                                 double val_fraction = 0.1) {
    require<ValueError>(vocab > 0 && vocab <= 65536,
                        "ByteDataset::from_tokens: argument 'vocab' must be in [1, 65536], got ",
                        vocab);
    for (std::size_t i = 0; i < ids.size(); ++i)
      require<ValueError>(ids[i] < vocab, "ByteDataset::from_tokens: token ", i, " is ", ids[i],
                          ", not below the vocabulary size ", vocab);
    ByteDataset d;
    d.ids_ = std::move(ids);
    d.tokenized_ = true;
    d.vocab_ = vocab;
    d.split(d.ids_.size(), val_fraction);
    return d;
  }

  /// Reads a whole file (IoError if it cannot be read).
  static ByteDataset from_file(const std::string& path, double val_fraction = 0.1) {
    const AlignedBuffer<std::uint8_t> data = io::read_file(path);
    return ByteDataset(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()),
                       val_fraction);
  }

  /// Token ids are below this: 256 for bytes, the from_tokens vocabulary otherwise.
  std::size_t vocab() const { return vocab_; }
  /// True for data built with from_tokens (train_bytes() and val_bytes() are then empty).
  bool pre_tokenized() const { return tokenized_; }
  std::size_t size() const { return pre_tokenized() ? ids_.size() : bytes_.size(); }
  std::size_t train_size() const { return train_size_; }
  std::size_t val_size() const { return size() - train_size_; }
  std::span<const std::uint8_t> train_bytes() const {
    return pre_tokenized() ? std::span<const std::uint8_t>{}
                           : std::span<const std::uint8_t>{bytes_.data(), train_size_};
  }
  std::span<const std::uint8_t> val_bytes() const {
    return pre_tokenized() ? std::span<const std::uint8_t>{}
                           : std::span<const std::uint8_t>{bytes_.data() + train_size_, val_size()};
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
        out.inputs[b * seq_len + t] = at(s + t);
        out.targets[b * seq_len + t] = at(s + t + 1);
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
    const std::size_t len = std::min(seq_len, size() - 1 - begin);
    out.batch = 1;
    out.seq_len = len;
    out.inputs.resize(len);
    out.targets.resize(len);
    for (std::size_t t = 0; t < len; ++t) {
      out.inputs[t] = at(begin + t);
      out.targets[t] = at(begin + t + 1);
    }
  }

 private:
  ByteDataset() = default;
  void split(std::size_t n, double val_fraction) {
    require<ValueError>(val_fraction > 0.0 && val_fraction < 1.0,
                        "ByteDataset: argument 'val_fraction' must be in (0, 1), got ",
                        val_fraction);
    const auto val = static_cast<std::size_t>(static_cast<double>(n) * val_fraction);
    train_size_ = n - val;
    require<ValueError>(val >= 2 && train_size_ >= 2, "ByteDataset: the data has ", n,
                        pre_tokenized() ? " tokens" : " bytes",
                        ", too few for a training and a validation part");
  }
  std::int32_t at(std::size_t i) const {
    return pre_tokenized() ? static_cast<std::int32_t>(ids_[i])
                           : static_cast<std::int32_t>(bytes_[i]);
  }

  std::vector<std::uint8_t> bytes_;
  std::vector<std::uint16_t> ids_;  // from_tokens
  bool tokenized_ = false;
  std::size_t vocab_ = kByteVocabulary;
  std::size_t train_size_ = 0;
};

}  // namespace pquant
