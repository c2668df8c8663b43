// Model files: round trip, and the strict loader on small crafted files. Each hostile case is a
// FormatError naming what is wrong (never an allocation the file cannot back, never a silent
// mismatch): unknown or missing tensors, structure fields of the wrong type, duplicate keys,
// sizes the tensors do not have, non-finite FP tensors, unknown forms. Files from the writer are
// laid out for in-place use, and loading them copies no kernel weights.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/random_model.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/model/variants.hpp"

// Edit{.field = ...} leaves the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using namespace pquant;
using namespace pquant::inference;
namespace fs = std::filesystem;

namespace {

ModelConfig small(std::size_t experts = 2) {
  ModelConfig c;
  c.vocab = 40;
  c.d_model = 32;
  c.layers = 2;
  c.heads = 2;
  c.d_ff = 96;
  c.r = 32;
  c.experts = experts;
  c.context = 16;
  return c;
}

const std::vector<std::uint8_t>& pquant_file() {
  static const std::vector<std::uint8_t> bytes =
      model_writer(random_packed_model<variants::PQuant<>>(small(), 1)).serialize();
  return bytes;
}

/// A copy of `bytes` with the structure JSON, metadata and tensors edited.
struct Edit {
  std::function<void(nlohmann::json&)> structure = {};
  std::function<void(std::map<std::string, std::string>&)> metadata = {};
  std::vector<std::string> drop = {};
  std::vector<std::pair<std::string, std::vector<float>>> add = {};
  std::function<void(const std::string&, std::vector<std::uint8_t>&)> tensor = {};
  std::string raw_structure = {};  // replaces the structure text verbatim when non-empty
};

std::vector<std::uint8_t> edited(const std::vector<std::uint8_t>& bytes, const Edit& e) {
  const io::SafetensorsView v = io::SafetensorsView::parse(bytes);
  io::SafetensorsWriter w;
  std::map<std::string, std::string> meta = v.metadata();
  if (e.structure) {
    nlohmann::json s = nlohmann::json::parse(meta.at("pquant.structure"));
    e.structure(s);
    meta["pquant.structure"] = s.dump();
  }
  if (!e.raw_structure.empty()) meta["pquant.structure"] = e.raw_structure;
  if (e.metadata) e.metadata(meta);
  for (const auto& [k, val] : meta) w.set_metadata(k, val);
  for (const io::TensorInfo& t : v.tensors()) {
    if (std::find(e.drop.begin(), e.drop.end(), t.name) != e.drop.end()) continue;
    const std::span<const std::uint8_t> b = v.bytes(t);
    std::vector<std::uint8_t> data(b.begin(), b.end());
    if (e.tensor) e.tensor(t.name, data);
    w.add(t.name, t.dtype, t.shape, data);
  }
  for (const auto& [name, values] : e.add) w.add<float>(name, {values.size()}, values);
  return w.serialize();
}

/// Loads `bytes` and expects a FormatError whose message contains `want`.
void expect_rejected(const std::vector<std::uint8_t>& bytes, const std::string& want) {
  try {
    (void)load_model(io::SafetensorsView::parse(bytes));
    ADD_FAILURE() << "accepted; expected an error containing '" << want << "'";
  } catch (const FormatError& err) {
    EXPECT_NE(std::string(err.what()).find(want), std::string::npos) << err.what();
  }
}

void poison(std::vector<std::uint8_t>& data, float value) { std::memcpy(data.data(), &value, 4); }

TEST(ModelFile, RoundTripKeepsEveryByte) {
  const PackedModel m = load_model(io::SafetensorsView::parse(pquant_file()));
  EXPECT_EQ(model_writer(m).serialize(), pquant_file());
  EXPECT_EQ(m.structure.label, "pquant");
  EXPECT_EQ(m.structure.blocks[0].experts, 2u);
}

TEST(ModelFile, LoadFromPathNamesTheFile) {
  std::string pattern = (fs::temp_directory_path() / "pquant_mf_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string path = (dir / "m.safetensors").string();
  save_model(load_model(io::SafetensorsView::parse(pquant_file())), path);
  EXPECT_NO_THROW((void)load_model(path));
  io::AtomicFile f(path);
  const std::vector<std::uint8_t> bad =
      edited(pquant_file(), {.tensor = [](const std::string& n, std::vector<std::uint8_t>& d) {
               if (n == "embedding") poison(d, std::numeric_limits<float>::quiet_NaN());
             }});
  f.write(bad);
  f.commit();
  try {
    (void)load_model(path);
    ADD_FAILURE() << "a NaN embedding was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'embedding'"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(ModelFile, RejectsUnknownAndMissingTensors) {
  expect_rejected(edited(pquant_file(), {.add = {{"extra", {1.0f}}}}), "unknown tensor 'extra'");
  expect_rejected(edited(pquant_file(), {.drop = {"blocks.1.o_norm"}}),
                  "missing tensor 'blocks.1.o_norm'");
  expect_rejected(edited(pquant_file(), {.drop = {"blocks.0.router"}}), "blocks.0.router");
}

TEST(ModelFile, RejectsStructuresTheTensorsDoNotHave) {
  // One layer in the structure of a two-layer file: block 1's tensors are unknown.
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["blocks"].erase(1);
                         }}),
                  "unknown tensor 'blocks.1.");
  // One expert on a two-expert file: the router and expert 1 are unknown.
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           for (auto& b : s["blocks"]) b["ffn"]["experts"]["count"] = 1;
                         }}),
                  "unknown tensor");
  // Sizes no tensor backs are refused before anything is allocated.
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["vocab"] = 1u << 24;
                           s["d_model"] = 1u << 20;
                         }}),
                  "the structure needs");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["context"] = 1u << 24;
                         }}),
                  "exceeds the limit");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["d_model"] = -64;
                         }}),
                  "non-negative integer");
}

TEST(ModelFile, RejectsMistypedAndDuplicateFields) {
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["norm_eps"] = true;
                         }}),
                  "'pquant.structure.norm_eps' must be a number");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["label"] = 7;
                         }}),
                  "must be a string");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["surprise"] = 1;
                         }}),
                  "unknown field 'surprise'");
  const io::SafetensorsView v = io::SafetensorsView::parse(pquant_file());
  std::string text = v.meta("pquant.structure");
  text.insert(1, "\"vocab\":40,");  // the same key twice
  expect_rejected(edited(pquant_file(), {.raw_structure = text}), "duplicate key 'vocab'");
  expect_rejected(edited(pquant_file(),
                         {.metadata = [](auto& m) { m["pquant.extra"] = "1"; }}),
                  "unknown __metadata__ key");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["blocks"][0]["attention"]["qkv"]["form"] = "sign3.row";
                         }}),
                  "unknown packed form 'sign3.row'");
  expect_rejected(edited(pquant_file(), {.structure = [](nlohmann::json& s) {
                           s["blocks"][0]["attention"]["qkv"]["bits"] = 2;
                         }}),
                  "does not describe form");
}

TEST(ModelFile, RejectsNonFiniteTensors) {
  const float inf = std::numeric_limits<float>::infinity();
  for (const char* name : {"final_norm", "head", "blocks.0.router", "blocks.1.alpha_beta",
                           "blocks.0.qkv.scale", "blocks.0.experts.1.up.scale"}) {
    SCOPED_TRACE(name);
    expect_rejected(edited(pquant_file(),
                           {.tensor = [&](const std::string& n, std::vector<std::uint8_t>& d) {
                              if (n == name) poison(d, inf);
                            }}),
                    std::string("tensor '") + name + "'");
  }
}

TEST(ModelFile, LongContextsAllocateWithUse) {
  // The largest context the format allows loads and runs without reserving the whole cache.
  PackedModel m = random_packed_model<variants::BitNet>(small(1), 3);
  m.structure.context = kMaxContext;
  const PackedModel loaded = load_model(io::SafetensorsView::parse(model_writer(m).serialize()));
  Engine e(loaded);
  const std::vector<int> prompt{1, 2, 3};
  EXPECT_NO_THROW(e.prefill(prompt));
}

// The writer starts the data and every tensor of a whole number of 64-byte lines (every kernel
// layout's codes) at a 64-byte aligned file offset, the others at their element size, with no gaps
// (parse checks contiguity, as every safetensors reader does).
TEST(ModelFile, WriterAlignsTensorsForInPlaceUse) {
  const std::vector<std::vector<std::uint8_t>> files{
      pquant_file(),
      model_writer(random_packed_model<variants::BitNet158>(small(1), 2)).serialize()};
  for (const std::vector<std::uint8_t>& bytes : files) {
    const io::SafetensorsView v = io::SafetensorsView::parse(bytes);
    const std::uint64_t start = 8 + v.header_bytes();
    EXPECT_EQ(start % 64, 0u);
    std::size_t aligned = 0;
    for (const io::TensorInfo& t : v.tensors()) {
      const std::uint64_t at = start + t.begin;
      EXPECT_EQ(at % io::dtype_size(t.dtype), 0u) << t.name;
      if (t.name.ends_with(".codes")) {
        EXPECT_EQ(t.bytes() % 64, 0u) << t.name;
      }
      if (t.bytes() % 64 == 0) {
        EXPECT_EQ(at % 64, 0u) << t.name;
        ++aligned;
      }
    }
    EXPECT_GT(aligned, 4u);
  }
}

// A loaded writer file is used where it lies: the LUT and INT8 codes point into the file's bytes
// (read or mapped) and outlive the file object; the same image at an address that is not 64-byte
// aligned (as a file from a writer that aligned less) is copied instead. Either way the engine
// gives the original model's logits bit for bit.
TEST(ModelFile, LoadedWeightsAreUsedInPlace) {
  ModelConfig c = small();
  c.d_model = 64;  // INT8 rows of 64 columns: the file's layout is the kernel's
  c.d_ff = 192;
  c.r = 64;
  const PackedModel original = random_packed_model<variants::PQuant<>>(c, 5);
  const std::vector<int> tokens{3, 1, 4, 1, 5, 9, 2};
  Engine reference(original);
  const Matrix<float> want = reference.forward_all(tokens);
  auto same_logits = [&](const PackedModel& m) {
    Engine e(m);
    const Matrix<float>& got = e.forward_all(tokens);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got.data()[i], want.data()[i]) << i;
  };
  using Sign = LutCodes<SignBit, PerRow>;
  std::string pattern = (fs::temp_directory_path() / "pquant_mf_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string path = (dir / "m.safetensors").string();
  save_model(original, path);
  for (io::LoadMode mode : {io::LoadMode::kRead, io::LoadMode::kMap}) {
    PackedModel m;
    {
      const io::SafetensorsFile f = io::SafetensorsFile::load(path, mode);
      m = load_model(f.view());
      const Sign* qkv = m.blocks[1].qkv.as<Sign>();
      const auto* up = m.blocks[1].experts[1].up.as<Int8Codes<PerRow>>();
      ASSERT_TRUE(qkv != nullptr && up != nullptr);
      EXPECT_TRUE(qkv->codes().borrowed());
      EXPECT_EQ(qkv->codes().data(), f->bytes(f->at("blocks.1.qkv.codes")).data());
      EXPECT_TRUE(up->codes().borrowed());
      EXPECT_EQ(static_cast<const void*>(up->codes().data()),
                f->bytes(f->at("blocks.1.experts.1.up.values")).data());
    }
    same_logits(m);  // the file object is gone; the forms keep its bytes alive
  }
  auto shifted = std::make_shared<std::vector<std::uint8_t>>();
  const std::vector<std::uint8_t> image = model_writer(original).serialize();
  shifted->resize(image.size() + 128);
  std::uint8_t* at = shifted->data() + (68 - reinterpret_cast<std::uintptr_t>(shifted->data()) % 64);
  std::copy(image.begin(), image.end(), at);
  const PackedModel copied = load_model(io::SafetensorsView::parse({at, image.size()}, shifted));
  EXPECT_FALSE(copied.blocks[1].qkv.as<Sign>()->codes().borrowed());
  same_logits(copied);
  fs::remove_all(dir);
}

}  // namespace
