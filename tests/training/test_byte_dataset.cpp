// ByteDataset: split, window contiguity, determinism by seed, whole-tail validation coverage.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "pquant/training/byte_dataset.hpp"

namespace pquant {
namespace {

std::string text_of(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + (i * 7 + i / 26) % 26));
  return s;
}

TEST(ByteDataset, HoldsOutTheLastTenPercent) {
  const std::string text = text_of(1000);
  const ByteDataset d(text);
  EXPECT_EQ(d.train_size(), 900u);
  EXPECT_EQ(d.val_size(), 100u);
  EXPECT_EQ(std::string(d.val_bytes().begin(), d.val_bytes().end()), text.substr(900));
  const ByteDataset q(text, 0.25);
  EXPECT_EQ(q.val_size(), 250u);
}

TEST(ByteDataset, TrainWindowsAreContiguousInsideTheTrainingPartAndDeterministic) {
  std::string text;
  for (int i = 0; i < 2000; ++i) text.push_back(static_cast<char>(i % 251));  // position-decodable
  const ByteDataset d(text);
  Rng a(42), b(42), c(43);
  TokenBatch x, y, z;
  std::size_t max_end = 0, min_start = 99999;
  for (int rep = 0; rep < 200; ++rep) {
    d.sample_train(a, 4, 16, x);
    d.sample_train(b, 4, 16, y);
    EXPECT_EQ(x.inputs, y.inputs);
    EXPECT_EQ(x.targets, y.targets);
    for (std::size_t s = 0; s < 4; ++s) {
      for (std::size_t t = 0; t + 1 < 16; ++t)
        EXPECT_EQ(x.targets[s * 16 + t], x.inputs[s * 16 + t + 1]);
      for (std::size_t t = 0; t < 16; ++t)
        EXPECT_EQ(x.targets[s * 16 + t],
                  (x.inputs[s * 16 + t] + 1) % 251);  // next byte of the text
    }
    // Recover window starts: the text is i % 251 and windows are far shorter than 251.
    for (std::size_t s = 0; s < 4; ++s) {
      const int first = x.inputs[s * 16];
      // Find the one start in the training part consistent with this byte (ambiguous mod 251: take
      // all).
      for (std::size_t st = static_cast<std::size_t>(first); st + 17 <= 2000; st += 251) {
        if (st + 17 <= d.train_size()) {
          min_start = std::min(min_start, st);
          max_end = std::max(max_end, st + 17);
        }
      }
    }
  }
  EXPECT_LE(max_end, d.train_size());
  d.sample_train(c, 4, 16, z);
  d.sample_train(a, 4, 16, x);
  EXPECT_NE(z.inputs, x.inputs);  // another seed, another stream (overwhelmingly likely)
}

TEST(ByteDataset, NeverSamplesFromTheValidationTail) {
  std::string text(1000, 'T');
  for (std::size_t i = 900; i < 1000; ++i) text[i] = 'V';
  const ByteDataset d(text);
  Rng rng(7);
  TokenBatch x;
  for (int rep = 0; rep < 2000; ++rep) {
    d.sample_train(rng, 2, 30, x);
    for (std::int32_t t : x.inputs) ASSERT_EQ(t, 'T');
    for (std::int32_t t : x.targets) ASSERT_EQ(t, 'T');
  }
}

TEST(ByteDataset, ValidationCoversTheWholeTailOnceInConsecutiveWindows) {
  const std::string text = text_of(1037);  // val = 103 bytes, 102 predicted targets
  const ByteDataset d(text);
  ASSERT_EQ(d.val_size(), 103u);
  EXPECT_EQ(d.val_windows(32), 4u);  // 32 + 32 + 32 + 6
  std::string inputs, targets;
  TokenBatch w;
  for (std::size_t k = 0; k < d.val_windows(32); ++k) {
    d.val_window(k, 32, w);
    EXPECT_EQ(w.batch, 1u);
    EXPECT_EQ(w.seq_len, k < 3 ? 32u : 6u);
    for (std::size_t t = 0; t < w.seq_len; ++t) {
      inputs.push_back(static_cast<char>(w.inputs[t]));
      targets.push_back(static_cast<char>(w.targets[t]));
    }
  }
  EXPECT_EQ(inputs, text.substr(d.train_size(), 102));
  EXPECT_EQ(targets, text.substr(d.train_size() + 1));
  EXPECT_THROW(d.val_window(4, 32, w), ValueError);
}

TEST(ByteDataset, BadInput) {
  EXPECT_THROW(ByteDataset("abc"), ValueError);
  EXPECT_THROW(ByteDataset(text_of(100), 0.0), ValueError);
  EXPECT_THROW(ByteDataset(text_of(100), 1.0), ValueError);
  const ByteDataset d(text_of(100));
  Rng rng(1);
  TokenBatch x;
  EXPECT_THROW(d.sample_train(rng, 1, 90, x), ValueError);  // 90 training bytes: at most T = 89
  EXPECT_NO_THROW(d.sample_train(rng, 1, 89, x));
  EXPECT_THROW(d.sample_train(rng, 0, 8, x), ValueError);
  EXPECT_THROW(ByteDataset::from_file("/nonexistent/pquant/corpus.txt"), IoError);
}

TEST(ByteDataset, PreTokenizedIdsSplitAndWindowLikeBytes) {
  std::vector<std::uint16_t> ids(1000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::uint16_t>(i * 37 % 5000);
  const ByteDataset d = ByteDataset::from_tokens(ids, 5000);
  EXPECT_TRUE(d.pre_tokenized());
  EXPECT_EQ(d.vocab(), 5000u);
  EXPECT_EQ(d.train_size(), 900u);
  EXPECT_EQ(d.val_size(), 100u);
  EXPECT_TRUE(d.train_bytes().empty());
  Rng rng(3);
  TokenBatch b;
  d.sample_train(rng, 4, 16, b);
  for (std::size_t s = 0; s < 4; ++s) {
    // Each window is a contiguous run of ids inside the training part: find its start.
    const std::size_t start = static_cast<std::size_t>(
        std::find(ids.begin(), ids.begin() + 900, static_cast<std::uint16_t>(b.inputs[s * 16])) -
        ids.begin());
    ASSERT_LT(start + 16, 900u);
    for (std::size_t t = 0; t < 16; ++t) {
      EXPECT_EQ(b.inputs[s * 16 + t], ids[start + t]);
      EXPECT_EQ(b.targets[s * 16 + t], ids[start + t + 1]);
    }
  }
  d.val_window(0, 32, b);
  for (std::size_t t = 0; t < 32; ++t) EXPECT_EQ(b.inputs[t], ids[900 + t]);
  std::vector<std::uint16_t> bad = ids;
  bad[123] = 5000;
  try {
    (void)ByteDataset::from_tokens(bad, 5000);
    FAIL() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("token 123 is 5000, not below the vocabulary size 5000"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ByteDataset::from_tokens({1, 2, 3}, 10), ValueError);  // too short to split
}

}  // namespace
}  // namespace pquant
