// Checkpoints: round trip, corruption and layout mismatch -> FormatError, atomic replacement.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "pquant/training/checkpoint.hpp"

namespace pquant {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  ParameterStore store;
  std::unique_ptr<AdamW> opt;
  explicit Fixture(std::size_t cols = 5) {
    store.add("a.weight", 3, cols, ParamRole::kWeight);
    store.add("a.gain", 1, cols, ParamRole::kNormGain);
    opt = std::make_unique<AdamW>(store);
  }
  void fill(float base) {
    for (std::size_t i = 0; i < store.values().size(); ++i) {
      store.values()[i] = base + 0.5f * static_cast<float>(i);
      store.grads()[i] = std::sin(static_cast<float>(i) + base);
    }
    opt->step(store, 0.01f, 0.1f);
  }
};

std::string temp_dir() {
  const fs::path p = fs::temp_directory_path() / ("pquant_ckpt_" + std::to_string(::getpid()));
  fs::create_directories(p);
  return p.string();
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Checkpoint, RoundTripRestoresEverythingBitExactly) {
  const std::string path = temp_dir() + "/round.ckpt";
  Fixture a;
  a.fill(1.f);
  a.fill(2.f);
  Rng rng(99);
  rng.next_u64();
  save_checkpoint(path, a.store, *a.opt, {.step = 17, .rng = rng.state(), .meta = "{\"v\":1}"});
  Fixture b;
  const TrainingState s = load_checkpoint(path, b.store, *b.opt);
  EXPECT_EQ(s.step, 17u);
  EXPECT_EQ(s.rng, rng.state());
  EXPECT_EQ(s.meta, "{\"v\":1}");
  EXPECT_EQ(b.opt->steps(), 2u);
  auto same = [](std::span<const float> x, std::span<const float> y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size_bytes()) == 0;
  };
  EXPECT_TRUE(same(a.store.values(), b.store.values()));
  EXPECT_TRUE(same(a.opt->first_moment(), b.opt->first_moment()));
  EXPECT_TRUE(same(a.opt->second_moment(), b.opt->second_moment()));
  fs::remove_all(fs::path(path).parent_path());
}

TEST(Checkpoint, CorruptTruncatedOrForeignFilesAreFormatErrors) {
  Fixture a;
  a.fill(1.f);
  const std::vector<std::uint8_t> good =
      checkpoint_bytes(a.store, *a.opt, {.step = 3, .rng = 5, .meta = ""});
  Fixture b;
  b.fill(7.f);
  const std::vector<float> before(b.store.values().begin(), b.store.values().end());
  for (std::size_t pos :
       {std::size_t{0}, std::size_t{9}, std::size_t{40}, good.size() / 2, good.size() - 1}) {
    std::vector<std::uint8_t> bad = good;
    bad[pos] ^= 0x10;
    EXPECT_THROW(restore_checkpoint(bad, b.store, *b.opt), FormatError) << "flip at " << pos;
  }
  for (std::size_t len : {std::size_t{0}, std::size_t{7}, std::size_t{30}, good.size() - 1}) {
    EXPECT_THROW(restore_checkpoint(std::span(good).first(len), b.store, *b.opt), FormatError)
        << len;
  }
  // Nothing was modified by the failed loads.
  EXPECT_TRUE(std::equal(before.begin(), before.end(), b.store.values().begin()));
  Fixture other(6);  // another shape
  EXPECT_THROW(restore_checkpoint(good, other.store, *other.opt), FormatError);
  ParameterStore renamed;
  renamed.add("b.weight", 3, 5, ParamRole::kWeight);
  renamed.add("a.gain", 1, 5, ParamRole::kNormGain);
  AdamW ropt(renamed);
  EXPECT_THROW(restore_checkpoint(good, renamed, ropt), FormatError);
  EXPECT_NO_THROW(restore_checkpoint(good, b.store, *b.opt));
  EXPECT_THROW(load_checkpoint("/nonexistent/pquant.ckpt", b.store, *b.opt), IoError);
}

TEST(Checkpoint, FailedSaveLeavesThePreviousCheckpointIntact) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/atomic.ckpt";
  Fixture a;
  a.fill(1.f);
  save_checkpoint(path, a.store, *a.opt, {.step = 1, .rng = 1, .meta = ""});
  const std::vector<char> old = read_all(path);
  // Make the next write fail half-way: cap the file size below the checkpoint's (EFBIG).
  Fixture big(4000);
  big.fill(2.f);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit capped = saved;
  capped.rlim_cur = static_cast<rlim_t>(old.size() + 1000);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &capped), 0);
  EXPECT_THROW(save_checkpoint(path, big.store, *big.opt, {.step = 2, .rng = 2, .meta = ""}),
               IoError);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(read_all(path), old);
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1u) << "the temporary file must be removed";
  Fixture c;
  EXPECT_EQ(load_checkpoint(path, c.store, *c.opt).step, 1u);
  EXPECT_THROW(save_checkpoint(dir + "/missing/sub/x.ckpt", a.store, *a.opt, {}), IoError);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pquant
