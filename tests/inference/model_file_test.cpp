// Model files: save -> load round trip gives identical logits for every variant (read and mmap);
// hostile model files (truncated, bit-flipped, wrong dtype, bad codes, bad config) are
// FormatErrors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/random_model.hpp"

using namespace pquant;
using namespace pquant::inference;
namespace fs = std::filesystem;

namespace {

InferenceConfig tiny(Variant v, std::size_t experts) {
  InferenceConfig c;
  c.variant = v;
  c.vocab = 40;
  c.d_model = 32;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 96;
  c.r = v == Variant::kPQuant ? 32 : 0;
  c.experts = v == Variant::kPQuant ? experts : 1;
  c.context = 16;
  return c;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "pquant_model_XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<float> run(const PackedModel& m) {
  Engine e(m);
  const std::vector<int> tokens = {1, 5, 9, 2, 33, 7};
  const Matrix<float>& l = e.forward_all(tokens);
  return {l.flat().begin(), l.flat().end()};
}

}  // namespace

TEST(ModelFile, RoundTripEveryVariant) {
  TempDir dir;
  for (auto [v, n] : {std::pair{Variant::kFp, 1}, std::pair{Variant::kBitNet, 1},
                      std::pair{Variant::kBitNet158, 1}, std::pair{Variant::kPQuant, 1},
                      std::pair{Variant::kPQuant, 3}}) {
    const PackedModel m = random_packed_model(tiny(v, static_cast<std::size_t>(n)), 11);
    const std::string p = (dir.path / "m.safetensors").string();
    const std::uint64_t bytes = save_model(m, p);
    EXPECT_EQ(bytes, fs::file_size(p));
    const std::vector<float> want = run(m);
    for (io::LoadMode mode : {io::LoadMode::kRead, io::LoadMode::kMap}) {
      const PackedModel back = load_model(p, mode);
      EXPECT_EQ(back.config.to_json(), m.config.to_json());
      EXPECT_EQ(run(back), want) << variant_name(v);
    }
    const io::SafetensorsFile f = io::SafetensorsFile::load(p);
    EXPECT_EQ(f->meta("pquant.format"), "pquant-packed");
    if (v == Variant::kBitNet) {  // 1-bit codes: [q; k; v] 96x32 -> 3 tiles * 4 pairs * 32 bytes
      EXPECT_EQ(f->at("blocks.0.qkv.codes").shape, (std::vector<std::uint64_t>{3, 4, 32}));
      EXPECT_EQ(f->at("blocks.0.qkv.codes").dtype, io::DType::kU8);
    }
  }
}

TEST(ModelFile, HostileFilesAreFormatErrors) {
  const PackedModel m = random_packed_model(tiny(Variant::kPQuant, 2), 3);
  const std::vector<std::uint8_t> good = model_writer(m).serialize();
  EXPECT_NO_THROW((void)load_model(io::SafetensorsView::parse(good)));
  // Truncations at a spread of lengths.
  for (std::size_t len = 0; len < good.size(); len += 97) {
    std::vector<std::uint8_t> t(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW((void)load_model(io::SafetensorsView::parse(t)), FormatError) << len;
  }
  // Random bit flips: a clean FormatError or a model the engine runs, never a crash.
  std::mt19937_64 rng(5);
  int ok = 0, bad = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<std::uint8_t> f = good;
    const std::size_t limit = trial % 2 ? f.size() : std::min<std::size_t>(f.size(), 4096);
    for (int k = 0; k < 3; ++k) f[rng() % limit] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    try {
      const PackedModel back = load_model(io::SafetensorsView::parse(f));
      Engine e(back);
      (void)e.step(1);
      ++ok;
    } catch (const FormatError&) {
      ++bad;
    } catch (const ValueError&) {  // flipped weights can make activations non-finite
      ++bad;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(bad, 0);
}

TEST(ModelFile, LyingTensorsAreRejected) {
  const PackedModel m = random_packed_model(tiny(Variant::kBitNet158, 1), 3);
  auto rebuild = [&](auto edit) {
    io::SafetensorsWriter w = model_writer(m);
    edit(w);
    return w.serialize();
  };
  // Config that disagrees with the tensors.
  {
    io::SafetensorsWriter w = model_writer(m);
    InferenceConfig c = m.config;
    c.d_model = 64;
    w.set_metadata("pquant.config", c.to_json().dump());
    EXPECT_THROW((void)load_model(io::SafetensorsView::parse(w.serialize())), FormatError);
    w.set_metadata("pquant.config", "{not json");
    EXPECT_THROW((void)load_model(io::SafetensorsView::parse(w.serialize())), FormatError);
    w.set_metadata("pquant.format", "other");
    EXPECT_THROW((void)load_model(io::SafetensorsView::parse(w.serialize())), FormatError);
  }
  // Ternary code 3 is not a weight.
  {
    const PackedLinear& q = m.blocks[0].qkv;
    std::vector<std::uint8_t> codes(q.ternary.data(), q.ternary.data() + q.ternary.bytes());
    codes[0] |= 0x3;  // weight (0, 0) -> code 3
    io::SafetensorsWriter w;
    const std::vector<std::uint8_t> all = rebuild([](io::SafetensorsWriter&) {});
    const io::SafetensorsView v = io::SafetensorsView::parse(all);
    w.set_metadata("pquant.format", "pquant-packed");
    w.set_metadata("pquant.format_version", kModelFormatVersion);
    w.set_metadata("pquant.config", v.meta("pquant.config"));
    for (const io::TensorInfo& t : v.tensors()) {
      auto b = v.bytes(t);
      if (t.name == "blocks.0.qkv.codes") b = codes;
      w.add(t.name, t.dtype, t.shape, b);
    }
    try {
      (void)load_model(io::SafetensorsView::parse(w.serialize()));
      ADD_FAILURE();
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("ternary code 3"), std::string::npos) << e.what();
    }
  }
}
