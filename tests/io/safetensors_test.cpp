// safetensors: round trips, a hand-built reference file, and hostile files (truncated, bit-flipped,
// oversized, lying, overlapping, wrong dtype). Every hostile input must be a FormatError.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "pquant/io/safetensors.hpp"

namespace fs = std::filesystem;
using pquant::FormatError;
using pquant::ShapeError;
using pquant::ValueError;
using namespace pquant::io;

namespace {

using Bytes = std::vector<std::uint8_t>;

/// A file from a header text and a data buffer, byte by byte per the format spec (independent of
/// SafetensorsWriter).
Bytes raw_file(const std::string& header, const Bytes& data, std::uint64_t length_field) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(length_field >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
Bytes raw_file(const std::string& header, const Bytes& data) {
  return raw_file(header, data, header.size());
}

SafetensorsWriter sample_writer() {
  SafetensorsWriter w;
  const std::vector<std::uint8_t> codes = {0xA5, 0x0F, 0xFF, 0x00, 0x81, 0x7E};
  const std::vector<std::int8_t> q = {-128, -1, 0, 1, 127, 5, -7};
  const std::vector<std::int32_t> ints = {-2147483647 - 1, 0, 2147483647};
  const std::vector<float> scales = {0.5f, -1.25f, 3.0e-8f, 1.0e30f};
  w.add<std::uint8_t>("codes", {2, 3}, codes);
  w.add<std::int8_t>("q", {7}, q);
  w.add<std::int32_t>("ints", {3}, ints);
  w.add<float>("scales", {2, 2}, scales);
  w.add<float>("empty", {0, 4}, std::span<const float>());
  w.add<float>("scalar", {}, std::vector<float>{42.0f});
  w.set_metadata("format", "pquant");
  w.set_metadata("config", "{\"d_model\": 8}");
  return w;
}

void expect_format_error(const Bytes& file, const std::string& needle = "") {
  try {
    (void)SafetensorsView::parse(file);
    ADD_FAILURE() << "expected FormatError (" << needle << ")";
  } catch (const FormatError& e) {
    if (!needle.empty()) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypesAndMetadata) {
  const Bytes file = sample_writer().serialize();
  const SafetensorsView v = SafetensorsView::parse(file);
  EXPECT_EQ(v.file_bytes(), file.size());
  EXPECT_EQ((8 + v.header_bytes()) % 8, 0u);
  EXPECT_EQ(v.meta("format"), "pquant");
  EXPECT_EQ(v.meta("config"), "{\"d_model\": 8}");
  EXPECT_THROW((void)v.meta("nope"), FormatError);
  EXPECT_EQ(v.read<std::uint8_t>("codes"), (Bytes{0xA5, 0x0F, 0xFF, 0x00, 0x81, 0x7E}));
  EXPECT_EQ(v.read<std::int8_t>("q"), (std::vector<std::int8_t>{-128, -1, 0, 1, 127, 5, -7}));
  EXPECT_EQ(v.read<std::int32_t>("ints"),
            (std::vector<std::int32_t>{-2147483647 - 1, 0, 2147483647}));
  EXPECT_EQ(v.read<float>("scales"), (std::vector<float>{0.5f, -1.25f, 3.0e-8f, 1.0e30f}));
  EXPECT_EQ(v.read<float>("scalar"), (std::vector<float>{42.0f}));
  EXPECT_TRUE(v.read<float>("empty").empty());
  EXPECT_EQ(v.at("codes").shape, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(v.at("codes").dtype, DType::kU8);
  // Every tensor is aligned to its element size within the file.
  for (const TensorInfo& t : v.tensors())
    EXPECT_EQ((8 + v.header_bytes() + t.begin) % dtype_size(t.dtype), 0u) << t.name;
  // Typed reads check dtype, shape and size.
  std::vector<float> four(4);
  EXPECT_THROW(v.read_into<float>("codes", std::span<float>(four)), FormatError);
  EXPECT_THROW(v.read_into<float>("scales", std::span<float>(four), std::vector<std::uint64_t>{4}),
               FormatError);
  std::vector<float> three(3);
  EXPECT_THROW(v.read_into<float>("scales", std::span<float>(three)), FormatError);
  EXPECT_THROW((void)v.at("missing"), FormatError);
}

TEST(Safetensors, SaveLoadReadAndMapped) {
  std::string pattern = (fs::temp_directory_path() / "pquant_st_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string p = (dir / "m.safetensors").string();
  const SafetensorsWriter w = sample_writer();
  const std::uint64_t size = w.save(p);
  EXPECT_EQ(size, fs::file_size(p));
  EXPECT_EQ(size, w.serialize().size());
  for (LoadMode mode : {LoadMode::kRead, LoadMode::kMap}) {
    SafetensorsFile f = SafetensorsFile::load(p, mode);
    EXPECT_EQ(f.mapped(), mode == LoadMode::kMap);
    SafetensorsFile moved = std::move(f);  // views stay valid after a move
    EXPECT_EQ(moved->read<float>("scales")[1], -1.25f);
    EXPECT_EQ(moved->meta("format"), "pquant");
  }
  // A file error names the path.
  write_file_atomic(p, Bytes{1, 2, 3});
  try {
    (void)SafetensorsFile::load(p, LoadMode::kMap);
    ADD_FAILURE();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(Safetensors, ReadsAHandBuiltReferenceFile) {
  // The example of the format's README: an I32 2x2 tensor and string metadata, unpadded header.
  const std::string header =
      R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"foo":"bar"}})";
  Bytes data;
  for (std::int32_t x : {1, -2, 3, 65536})
    for (int i = 0; i < 4; ++i)
      data.push_back(static_cast<std::uint8_t>(static_cast<std::uint32_t>(x) >> (8 * i)));
  const Bytes file = raw_file(header, data);
  const SafetensorsView v = SafetensorsView::parse(file);
  EXPECT_EQ(v.read<std::int32_t>("test"), (std::vector<std::int32_t>{1, -2, 3, 65536}));
  EXPECT_EQ(v.meta("foo"), "bar");
  // Other tools' dtypes are read (F16 bytes as raw bytes).
  const Bytes f16 =
      raw_file(R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})", Bytes(6, 1));
  EXPECT_EQ(SafetensorsView::parse(f16).at("h").dtype, DType::kF16);
}

TEST(Safetensors, WriterRejectsBadTensors) {
  SafetensorsWriter w;
  w.add<float>("a", {2}, std::vector<float>{1, 2});
  EXPECT_THROW(w.add<float>("a", {2}, std::vector<float>{1, 2}), ValueError);
  EXPECT_THROW(w.add<float>("", {2}, std::vector<float>{1, 2}), ValueError);
  EXPECT_THROW(w.add<float>("__metadata__", {2}, std::vector<float>{1, 2}), ValueError);
  EXPECT_THROW(w.add<float>("b", {3}, std::vector<float>{1, 2}), ShapeError);
  EXPECT_THROW(w.add<float>("c", {1ull << 40, 1ull << 40}, std::vector<float>{1}), ShapeError);
}

TEST(Safetensors, TruncatedFilesAreRejected) {
  const Bytes file = sample_writer().serialize();
  for (std::size_t len = 0; len < file.size(); ++len)
    expect_format_error(Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(len)));
  Bytes longer = file;
  longer.push_back(0);  // trailing garbage
  expect_format_error(longer, "trailing garbage");
}

TEST(Safetensors, OversizedAndLyingHeaderLengths) {
  const std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  expect_format_error(raw_file(h, {1, 2}, ~std::uint64_t{0}), "exceeds the limit");
  expect_format_error(raw_file(h, {1, 2}, kMaxHeaderBytes + 1), "exceeds the limit");
  expect_format_error(raw_file(h, {1, 2}, h.size() + 3), "exceeds the");
  expect_format_error(raw_file(h, {1, 2}, h.size() - 1), "not valid JSON");
  expect_format_error(raw_file(h, {1, 2}, 0), "starting with '{'");
  expect_format_error(raw_file(" " + h, {1, 2}), "starting with '{'");
  expect_format_error(Bytes{1, 0, 0}, "shorter than");
  EXPECT_NO_THROW((void)SafetensorsView::parse(raw_file(h, {1, 2})));
}

TEST(Safetensors, HeaderPaddingIsSpacesOnly) {
  const std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  // The format pads with spaces (0x20), and a header may be pretty-printed inside the object.
  EXPECT_EQ(SafetensorsView::parse(raw_file(h + "      ", {1, 2})).header_bytes(), h.size() + 6);
  EXPECT_NO_THROW((void)SafetensorsView::parse(
      raw_file("{\n \"a\":\t{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}"
               "\r\n} ",
               {1, 2})));
  // NUL padding: the JSON parser would stop at the first NUL and ignore the rest of the header.
  expect_format_error(raw_file(h + std::string(6, '\0'), {1, 2}),
                      "NUL byte at file offset " + std::to_string(8 + h.size()));
  expect_format_error(raw_file(h + "  " + std::string(1, '\0') + "  ", {1, 2}), "NUL byte");
  expect_format_error(raw_file(std::string("{}") + '\0' + h.substr(1), {1, 2}), "NUL byte");
  // Other whitespace after the object is not padding.
  for (const char* pad : {"\n", " \t", "\r\n  "})
    expect_format_error(raw_file(h + pad, {1, 2}), "must be spaces (0x20)");
  // Through SafetensorsFile::load the message names the file.
  std::string pattern = (fs::temp_directory_path() / "pquant_st_pad_XXXXXX").string();
  const fs::path dir = ::mkdtemp(pattern.data());
  const std::string p = (dir / "nul.safetensors").string();
  write_file_atomic(p, raw_file(h + std::string(6, '\0'), {1, 2}));
  try {
    (void)SafetensorsFile::load(p);
    ADD_FAILURE() << "a NUL-padded header was accepted";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("NUL byte"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(Safetensors, LyingOverlappingAndMalformedEntries) {
  const Bytes d4(4, 7);
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
  };
  auto bad = [&](const std::string& body, const Bytes& data, const std::string& needle) {
    expect_format_error(raw_file("{" + body + "}", data), needle);
  };
  // Offsets beyond the buffer, gaps, overlap, reversed.
  bad(entry("a", "U8", "[8]", "[0,8]"), d4, "cover 8 bytes");
  bad(entry("a", "U8", "[2]", "[2,4]"), d4, "starts at offset 2");
  bad(entry("a", "U8", "[3]", "[0,3]") + "," + entry("b", "U8", "[2]", "[2,4]"), d4,
      "starts at offset 2");
  bad(entry("a", "U8", "[4]", "[0,4]") + "," + entry("b", "U8", "[4]", "[0,4]"), d4,
      "starts at offset 0");
  bad(entry("a", "U8", "[0]", "[4,0]"), d4, "end 0 < begin 4");
  bad(entry("a", "U8", "[2]", "[0,2]"), d4, "trailing garbage");
  // Shape and dtype disagree with the byte count; shape overflows.
  bad(entry("a", "F32", "[4]", "[0,4]"), d4, "needs 16 bytes");
  bad(entry("a", "U8", "[2,3]", "[0,4]"), d4, "needs 6 bytes");
  bad(entry("a", "F32", "[4611686018427387904,4]", "[0,4]"), d4, "overflows");
  bad(entry("a", "U8", "[-4]", "[0,4]"), d4, "non-negative");
  bad(entry("a", "U8", "[4.0]", "[0,4]"), d4, "non-negative");
  bad(entry("a", "U8", "[\"4\"]", "[0,4]"), d4, "non-negative");
  bad(entry("a", "U8", "4", "[0,4]"), d4, "shape must be an array");
  bad(entry("a", "U8", "[4]", "[0,4,8]"), d4, "data_offsets");
  bad(entry("a", "U8", "[4]", "[0,-4]"), d4, "data_offsets");
  bad(entry("a", "U8", "[4]", "[0,18446744073709551616]"), d4, "data_offsets");
  // Unknown or mistyped dtype.
  bad(entry("a", "Q4", "[4]", "[0,4]"), d4, "unknown dtype 'Q4'");
  bad(entry("a", "u8", "[4]", "[0,4]"), d4, "unknown dtype");
  bad(R"("a":{"dtype":1,"shape":[4],"data_offsets":[0,4]})", d4, "dtype must be a string");
  // Missing / extra fields, non-object entries, duplicate names, bad metadata.
  bad(R"("a":{"dtype":"U8","shape":[4]})", d4, "lacks field 'data_offsets'");
  bad(R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4],"x":1})", d4, "unknown field 'x'");
  bad(R"("a":[1,2])", d4, "must be an object");
  bad(entry("a", "U8", "[2]", "[0,2]") + "," + entry("a", "U8", "[2]", "[2,4]"), d4,
      "duplicate key 'a'");
  bad(entry("", "U8", "[4]", "[0,4]"), d4, "non-empty");
  bad(entry("a", "U8", "[4]", "[0,4]") + R"(,"__metadata__":{"k":1})", d4, "must be a string");
  bad(entry("a", "U8", "[4]", "[0,4]") + R"(,"__metadata__":{"k":"1","k":"2"})", d4,
      "duplicate key 'k'");
  bad(entry("a", "U8", "[4]", "[0,4]") + R"(,"__metadata__":"x")", d4,
      "__metadata__ must be an object");
  expect_format_error(raw_file("[1,2]", d4), "starting with '{'");
  expect_format_error(raw_file("{\"a\":", d4), "not valid JSON");
  expect_format_error(raw_file("{\"a\xff\":{}}", d4), "not valid JSON");  // invalid UTF-8
  // Valid edge cases: an empty header object with no data, zero-size tensors anywhere.
  EXPECT_NO_THROW((void)SafetensorsView::parse(raw_file("{}", {})));
  EXPECT_NO_THROW((void)SafetensorsView::parse(raw_file(
      "{" + entry("z", "F32", "[0]", "[4,4]") + "," + entry("a", "U8", "[4]", "[0,4]") + "}", d4)));
}

TEST(Safetensors, RandomBitFlipsNeverCrash) {
  const Bytes file = sample_writer().serialize();
  std::mt19937_64 rng(12345);
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    Bytes f = file;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Half of the flips hit the length field and header, where they matter most.
      const std::size_t limit =
          (trial % 2 == 0) ? std::min<std::size_t>(f.size(), 8 + 300) : f.size();
      const std::size_t pos = rng() % limit;
      f[pos] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
    }
    try {
      const SafetensorsView v = SafetensorsView::parse(f);
      ++parsed;
      // A file that parses is consistent: every tensor's bytes lie inside the file.
      std::uint64_t total = 0;
      for (const TensorInfo& t : v.tensors()) {
        const auto b = v.bytes(t);
        ASSERT_GE(b.data(), f.data());
        ASSERT_LE(b.data() + b.size(), f.data() + f.size());
        total += b.size();
      }
      EXPECT_EQ(8 + v.header_bytes() + total, f.size());
    } catch (const FormatError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);    // flips in tensor bytes or padding keep a valid file
  EXPECT_GT(rejected, 0);  // flips in the header are caught
}
