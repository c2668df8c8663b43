// Checkpoints: a safetensors file; round trip, corruption, crafted and foreign files ->
// FormatError naming the problem, atomic replacement, stale temp files, refused targets.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
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

bool same(std::span<const float> x, std::span<const float> y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size_bytes()) == 0;
}

/// The parameters' values in an arena (the alignment padding between them is not state).
std::vector<float> params(const ParameterStore& store, std::span<const float> arena) {
  std::vector<float> out;
  for (const ParamInfo& p : store.infos())
    out.insert(out.end(), arena.begin() + static_cast<long>(p.offset),
               arena.begin() + static_cast<long>(p.offset + p.size()));
  return out;
}

/// The message of the FormatError `f` throws ("" if it throws nothing).
std::string format_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

/// Rebuilds checkpoint bytes with tensors and metadata changed by `edit`, checksum recomputed: a
/// crafted file that only the content checks can catch.
struct Crafted {
  std::map<std::string, std::string> meta;
  struct Tensor {
    io::DType dtype;
    std::vector<std::uint64_t> shape;
    std::vector<std::uint8_t> bytes;
  };
  std::map<std::string, Tensor> tensors;

  explicit Crafted(std::span<const std::uint8_t> good) {
    const io::SafetensorsView v = io::SafetensorsView::parse(good);
    meta = v.metadata();
    for (const io::TensorInfo& t : v.tensors()) {
      const auto b = v.bytes(t);
      tensors[t.name] = {t.dtype, t.shape, {b.begin(), b.end()}};
    }
  }
  void set_float(const std::string& name, std::size_t i, float value) {
    std::memcpy(tensors.at(name).bytes.data() + 4 * i, &value, 4);
  }
  void set_u64(const std::string& name, std::uint64_t value) {
    for (int i = 0; i < 8; ++i)
      tensors.at(name).bytes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
  }
  std::vector<std::uint8_t> bytes() {
    std::vector<detail::DigestTensor> digest;
    for (const auto& [name, t] : tensors) digest.push_back({name, t.dtype, &t.shape, t.bytes});
    meta["pquant.checksum"] = detail::checkpoint_digest(meta, digest);
    io::SafetensorsWriter w;
    for (const auto& [k, v] : meta) w.set_metadata(k, v);
    for (const auto& [name, t] : tensors) w.add(name, t.dtype, t.shape, t.bytes);
    return w.serialize();
  }
};

TEST(Checkpoint, RoundTripRestoresEverythingBitExactly) {
  const std::string path = temp_dir() + "/round.safetensors";
  Fixture a;
  a.fill(1.f);
  a.fill(2.f);
  Rng rng(99);
  rng.next_u64();
  save_checkpoint(path, a.store, *a.opt,
                  {.step = 17, .rng = rng.state(), .meta = "{\"v\":1}", .trainer = "{}"});
  Fixture b;
  const TrainingState s = load_checkpoint(path, b.store, *b.opt);
  EXPECT_EQ(s.step, 17u);
  EXPECT_EQ(s.rng, rng.state());
  EXPECT_EQ(s.meta, "{\"v\":1}");
  EXPECT_EQ(s.trainer, "{}");
  EXPECT_EQ(b.opt->steps(), 2u);
  EXPECT_TRUE(same(params(a.store, a.store.values()), params(b.store, b.store.values())));
  EXPECT_TRUE(same(params(a.store, a.opt->first_moment()), params(b.store, b.opt->first_moment())));
  EXPECT_TRUE(
      same(params(a.store, a.opt->second_moment()), params(b.store, b.opt->second_moment())));
  fs::remove_all(fs::path(path).parent_path());
}

TEST(Checkpoint, IsASafetensorsFileWithTheDocumentedTensorsAndMetadata) {
  Fixture a;
  a.fill(1.f);
  const std::vector<std::uint8_t> bytes =
      checkpoint_bytes(a.store, *a.opt, {.step = 9, .rng = 123, .meta = "m", .trainer = "t"});
  // The header by hand, as any safetensors reader sees it: u64 length + JSON.
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<std::size_t>(i)];
  const nlohmann::json h =
      nlohmann::json::parse(std::string(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(n)));
  EXPECT_EQ(h["__metadata__"]["pquant.format"], "pquant-checkpoint");
  EXPECT_EQ(h["__metadata__"]["pquant.format_version"], "1");
  EXPECT_EQ(h["__metadata__"]["pquant.rng"], "123");
  EXPECT_EQ(h["__metadata__"]["pquant.meta"], "m");
  EXPECT_EQ(h["__metadata__"]["pquant.trainer"], "t");
  EXPECT_EQ(h["__metadata__"]["pquant.checksum"].get<std::string>().size(), 16u);
  for (const char* name : {"a.weight", "adamw.m.a.weight", "adamw.v.a.weight"}) {
    EXPECT_EQ(h[name]["dtype"], "F32") << name;
    EXPECT_EQ(h[name]["shape"], nlohmann::json({3, 5})) << name;
  }
  EXPECT_EQ(h["a.gain"]["shape"], nlohmann::json({1, 5}));
  EXPECT_EQ(h["training.step"]["dtype"], "U64");
  EXPECT_EQ(h.size(), 1u + 3 * 2 + 2);  // metadata, 3 arenas x 2 parameters, 2 counters
  // The weights are stored as they are in the arena.
  const io::SafetensorsView v = io::SafetensorsView::parse(bytes);
  const std::vector<float> w = v.read<float>("a.weight");
  EXPECT_TRUE(same(w, a.store.values().first(15)));
  EXPECT_EQ(io::detail::read_u64_le(v.bytes(v.at("training.step")).data()), 9u);
  EXPECT_EQ(io::detail::read_u64_le(v.bytes(v.at("adamw.step")).data()), 1u);
  // The reader counts the latent weights before anything is restored.
  EXPECT_EQ(CheckpointReader::parse(bytes).parameter_elements(), 3u * 5 + 1 * 5);
}

TEST(Checkpoint, CorruptOrTruncatedFilesAreFormatErrors) {
  Fixture a;
  a.fill(1.f);
  const std::vector<std::uint8_t> good =
      checkpoint_bytes(a.store, *a.opt, {.step = 3, .rng = 5, .meta = "", .trainer = ""});
  Fixture b;
  b.fill(7.f);
  const std::vector<float> before(b.store.values().begin(), b.store.values().end());
  // Bit flips in the length, the header, the counters and the float data.
  for (std::size_t pos : {std::size_t{0}, std::size_t{9}, std::size_t{40}, good.size() / 2,
                          good.size() - 200, good.size() - 1}) {
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
  EXPECT_NO_THROW(restore_checkpoint(good, b.store, *b.opt));
  EXPECT_THROW(load_checkpoint("/nonexistent/pquant.ckpt", b.store, *b.opt), IoError);
}

TEST(Checkpoint, ALayoutMismatchNamesTheTensor) {
  Fixture a;
  a.fill(1.f);
  const std::vector<std::uint8_t> good =
      checkpoint_bytes(a.store, *a.opt, {.step = 3, .rng = 5, .meta = "", .trainer = ""});
  Fixture other(6);  // another shape
  EXPECT_NE(format_error([&] { restore_checkpoint(good, other.store, *other.opt, "x.ckpt"); })
                .find("'x.ckpt' tensor 'a.weight' is F32 [3, 5], the model's is F32 [3, 6]"),
            std::string::npos);
  ParameterStore renamed;
  renamed.add("b.weight", 3, 5, ParamRole::kWeight);
  renamed.add("a.gain", 1, 5, ParamRole::kNormGain);
  AdamW ropt(renamed);
  EXPECT_NE(format_error([&] { restore_checkpoint(good, renamed, ropt); })
                .find("lacks tensor 'b.weight'"),
            std::string::npos);
  ParameterStore fewer;
  fewer.add("a.weight", 3, 5, ParamRole::kWeight);
  AdamW fopt(fewer);
  EXPECT_NE(format_error([&] { restore_checkpoint(good, fewer, fopt); })
                .find("holds tensor 'a.gain', which the model does not have"),
            std::string::npos);
}

TEST(Checkpoint, CraftedFilesWithAValidChecksumAreStillChecked) {
  Fixture a;
  a.fill(1.f);
  const std::vector<std::uint8_t> good =
      checkpoint_bytes(a.store, *a.opt, {.step = 3, .rng = 5, .meta = "", .trainer = ""});
  Fixture b;
  b.fill(7.f);
  auto error_of = [&](const std::function<void(Crafted&)>& edit) {
    Crafted c(good);
    edit(c);
    const std::vector<std::uint8_t> bytes = c.bytes();
    return format_error([&] { restore_checkpoint(bytes, b.store, *b.opt, "crafted.ckpt"); });
  };
  Fixture faithful;
  EXPECT_NO_THROW(restore_checkpoint(Crafted(good).bytes(), faithful.store, *faithful.opt));
  EXPECT_EQ(params(a.store, a.store.values()), params(faithful.store, faithful.store.values()));
  const std::vector<float> before(b.store.values().begin(), b.store.values().end());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::function<void(Crafted&)> edit;
    std::string message;
  };
  const Case cases[] = {
      {[&](Crafted& c) { c.set_float("a.weight", 4, nan); },
       "'crafted.ckpt' tensor 'a.weight' holds nan at element 4 (must be finite)"},
      {[&](Crafted& c) { c.set_float("a.gain", 0, -inf); }, "tensor 'a.gain' holds -inf"},
      {[&](Crafted& c) { c.set_float("adamw.m.a.weight", 2, inf); },
       "tensor 'adamw.m.a.weight' holds inf"},
      {[&](Crafted& c) { c.set_float("adamw.v.a.gain", 1, -1.0f); },
       "second moments must be finite and >= 0"},
      {[&](Crafted& c) { c.set_u64("adamw.step", 4); }, "has 4 optimizer updates but only 3 steps"},
      {[&](Crafted& c) { c.tensors["extra"] = {io::DType::kF32, {1}, std::vector<std::uint8_t>(4)}; },
       "holds tensor 'extra', which the model does not have"},
      {[&](Crafted& c) { c.tensors.erase("training.step"); }, "lacks tensor 'training.step'"},
      {[&](Crafted& c) { c.meta["pquant.rng"] = "-1"; }, "bad __metadata__ 'pquant.rng' ('-1')"},
      {[&](Crafted& c) { c.meta["pquant.extra"] = "1"; }, "unknown __metadata__ key 'pquant.extra'"},
      {[&](Crafted& c) { c.meta["pquant.format_version"] = "2"; },
       "has checkpoint format version '2'"},
  };
  for (const Case& c : cases) {
    const std::string e = error_of(c.edit);
    EXPECT_NE(e.find(c.message), std::string::npos) << "expected '" << c.message << "', got '" << e << "'";
  }
  EXPECT_TRUE(std::equal(before.begin(), before.end(), b.store.values().begin()));
}

TEST(Checkpoint, FilesOfAnotherKindSayWhatTheyAre) {
  Fixture b;
  auto error_of = [&](std::span<const std::uint8_t> bytes) {
    return format_error([&] { restore_checkpoint(bytes, b.store, *b.opt, "f"); });
  };
  io::SafetensorsWriter model;
  model.set_metadata("pquant.format", "pquant-packed");
  model.add<float>("embed", {1}, std::vector<float>{1.f});
  EXPECT_NE(error_of(model.serialize()).find("'f' is a packed model file (for inference), not a training checkpoint"),
            std::string::npos);
  io::SafetensorsWriter plain;
  plain.add<float>("w", {1}, std::vector<float>{1.f});
  EXPECT_NE(error_of(plain.serialize()).find("'pquant.format' is missing, expected 'pquant-checkpoint'"),
            std::string::npos);
  std::vector<std::uint8_t> legacy = {'P', 'Q', 'C', 'K', 'P', 'T', '0', '1', 1, 0, 0, 0};
  legacy.resize(64);
  EXPECT_NE(error_of(legacy).find("retired PQCKPT01 format"), std::string::npos);
  const std::string text = "hello world, not a checkpoint";
  EXPECT_NE(error_of({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()})
                .find("'f' is not a training checkpoint (not a valid safetensors file"),
            std::string::npos);
}

TEST(Checkpoint, NonFiniteStateIsNeverSaved) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/finite.ckpt";
  Fixture a;
  a.fill(1.f);
  save_checkpoint(path, a.store, *a.opt, {});
  const std::vector<char> old = read_all(path);
  a.store.values()[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(save_checkpoint(path, a.store, *a.opt, {}), ValueError);
  a.store.values()[7] = 1.f;
  a.opt->second_moment()[2] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(save_checkpoint(path, a.store, *a.opt, {}), ValueError);
  EXPECT_EQ(read_all(path), old);
  fs::remove_all(dir);
}

TEST(Checkpoint, FailedSaveLeavesThePreviousCheckpointIntact) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/atomic.ckpt";
  Fixture a;
  a.fill(1.f);
  save_checkpoint(path, a.store, *a.opt, {.step = 1, .rng = 1, .meta = "", .trainer = ""});
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
  EXPECT_THROW(save_checkpoint(path, big.store, *big.opt, {.step = 2, .rng = 2, .meta = "", .trainer = ""}),
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

TEST(Checkpoint, ASaveRemovesTheTempFilesAKilledSaveLeftBehind) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/run.ckpt";
  auto touch = [](const std::string& p) { std::ofstream(p) << "partial"; };
  touch(path + ".tmp.a1B2c3");      // ours (mkstemp's six characters): removed
  touch(path + ".tmp.Zz9yY8");      // ours: removed
  touch(path + ".tmp.keep");        // not the pattern: kept
  touch(dir + "/other.ckpt.tmp.a1B2c3");  // another target's: kept
  Fixture a;
  a.fill(1.f);
  save_checkpoint(path, a.store, *a.opt, {});
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"other.ckpt.tmp.a1B2c3", "run.ckpt", "run.ckpt.tmp.keep"}));
  fs::remove_all(dir);
}

TEST(Checkpoint, ATargetThatCannotBeWrittenIsRefusedUpFront) {
  const std::string dir = temp_dir();
  auto io_error = [](const std::string& path) {
    try {
      check_checkpoint_target(path);
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(io_error(dir).find("'" + dir + "': it is a directory"), std::string::npos);
  EXPECT_NE(io_error(dir + "/missing/x.ckpt").find("the directory '" + dir + "/missing' does not exist"),
            std::string::npos);
  EXPECT_EQ(io_error(dir + "/fine.ckpt"), "");
  EXPECT_TRUE(fs::is_empty(dir)) << "the probe leaves no file behind";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pquant
