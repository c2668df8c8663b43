// Model files: save -> load round trip gives identical logits for every variant (read and mmap);
// hostile model files (truncated, bit-flipped, wrong dtype, bad codes, bad config) are
// FormatErrors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <tuple>
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

/// The serialized file of `m` with tensor `name`'s bytes replaced.
std::vector<std::uint8_t> with_tensor(const PackedModel& m, const std::string& name,
                                      const std::vector<std::uint8_t>& bytes) {
  const std::vector<std::uint8_t> all = model_writer(m).serialize();
  const io::SafetensorsView v = io::SafetensorsView::parse(all);
  io::SafetensorsWriter w;
  for (const auto& [key, value] : v.metadata()) w.set_metadata(key, value);
  for (const io::TensorInfo& t : v.tensors()) {
    auto b = v.bytes(t);
    if (t.name == name) b = bytes;
    w.add(t.name, t.dtype, t.shape, b);
  }
  return w.serialize();
}

void expect_format_error(const std::vector<std::uint8_t>& file, const std::string& what) {
  try {
    (void)load_model(io::SafetensorsView::parse(file));
    ADD_FAILURE() << "no error, expected " << what;
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
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
  // Ternary code 3 is not a weight; the message locates it.
  const PackedLinear& q = m.blocks[0].qkv;
  const std::vector<std::uint8_t> codes(q.ternary.data(), q.ternary.data() + q.ternary.bytes());
  for (auto [byte, bits, where] :
       {std::tuple{std::size_t{0}, 0x03u, "(0, 0)"}, std::tuple{std::size_t{5}, 0xC0u, "(5, 3)"}}) {
    std::vector<std::uint8_t> bad = codes;
    bad[byte] |= static_cast<std::uint8_t>(bits);  // row 5: pair 0, high nibble, second weight
    expect_format_error(with_tensor(m, "blocks.0.qkv.codes", bad),
                        std::string("invalid ternary code 3 at ") + where);
  }
}

TEST(ModelFile, NonZeroPaddingCodesAreRejected) {
  // d = 40: qkv is [120 x 40], stored as 4 tiles (128 rows) x 6 pairs (48 columns).
  InferenceConfig c = tiny(Variant::kBitNet, 1);
  c.d_model = 40;
  const PackedModel m = random_packed_model(c, 3);
  const PackedLinear& q = m.blocks[0].qkv;
  ASSERT_EQ(q.sign.tiles(), 4u);
  ASSERT_EQ(q.sign.pairs(), 6u);
  const std::vector<std::uint8_t> codes(q.sign.data(), q.sign.data() + q.sign.bytes());
  EXPECT_NO_THROW(
      (void)load_model(io::SafetensorsView::parse(with_tensor(m, "blocks.0.qkv.codes", codes))));
  const std::size_t pairs = 6;
  // Row 127 (a padding row of the last tile), and column 40 of row 0 (pair 5, low nibble bit 0,
  // a padding column).
  for (std::size_t byte : {(3 * pairs + 0) * 32 + 31, (0 * pairs + 5) * 32 + 0}) {
    std::vector<std::uint8_t> bad = codes;
    bad[byte] |= 0x01;
    expect_format_error(with_tensor(m, "blocks.0.qkv.codes", bad), "non-zero padding");
  }
  // A set bit inside the matrix (row 119, column 39: pair 4, high nibble, last weight) is a
  // valid weight.
  std::vector<std::uint8_t> ok = codes;
  ok[(3 * pairs + 4) * 32 + 23] ^= 0x80;
  EXPECT_NO_THROW(
      (void)load_model(io::SafetensorsView::parse(with_tensor(m, "blocks.0.qkv.codes", ok))));
}
