// safetensors files: write them, and read them without trusting a single byte.
//
// Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of UTF-8 JSON, then the raw tensor bytes. The JSON maps each tensor name to
//   {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}
// (offsets relative to the start of the byte buffer) plus an optional "__metadata__" object whose
// values are strings. pquant writes U8 (packed codes), I8, I32 and F32 tensors; it reads every
// whole-byte dtype of the format.
//
// The reader applies the reference implementation's checks and a few more, so that a truncated,
// oversized, overlapping or lying file is a FormatError, never an out-of-bounds read:
//   - file >= 8 bytes; N <= kMaxHeaderBytes (100 MB); 8 + N <= file size (checked arithmetic)
//   - the header is a JSON object (parsed by nlohmann-json) starting with '{'; duplicate keys
//     anywhere are rejected (JSON parsers silently keep the last one: a name could be smuggled);
//     only spaces (0x20) may follow the object, and no byte of the header may be NUL
//   - every entry has exactly dtype/shape/data_offsets; dtype known; shape and offsets are
//     non-negative integers; elements * dtype size computed with overflow checks equals end - begin
//   - sorted by offset, the tensors are contiguous, non-overlapping and cover the byte buffer
//     exactly: no gaps, no trailing garbage
//   - __metadata__ is an object of strings; names are non-empty and unique
// The writer pads the header with spaces (as the format allows) so the data starts at a file
// offset that is a multiple of kDataAlignment (64), puts first the tensors whose size is a multiple
// of 64 bytes (so each of them starts 64-byte aligned: every kernel layout's codes), then the others
// wider element types first (each aligned to its element size). No gaps: any safetensors reader
// accepts the file. A loaded file (SafetensorsFile) keeps its bytes alive through owner(), so
// aligned tensors can be used in place (in_place()).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "pquant/core/aligned_buffer.hpp"
#include "pquant/core/error.hpp"
#include "pquant/io/atomic_file.hpp"
#include "pquant/io/mapped_file.hpp"

namespace pquant::io {

/// Largest header the reader accepts (the reference reader's limit).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
/// File offset alignment of the writer's data start and of its tensors whose size is a multiple.
inline constexpr std::size_t kDataAlignment = 64;

enum class DType : std::uint8_t {
  kBool,
  kU8,
  kI8,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64
};

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};
inline constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},   {DType::kI8, "I8", 1},
    {DType::kI16, "I16", 2},   {DType::kU16, "U16", 2}, {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kI32, "I32", 4}, {DType::kU32, "U32", 4},
    {DType::kF32, "F32", 4},   {DType::kI64, "I64", 8}, {DType::kU64, "U64", 8},
    {DType::kF64, "F64", 8}};

inline constexpr std::string_view dtype_name(DType t) {
  return kDTypes[static_cast<int>(t)].name;
}
inline constexpr std::size_t dtype_size(DType t) {
  return kDTypes[static_cast<int>(t)].size;
}
inline std::optional<DType> parse_dtype(std::string_view name) {
  for (const DTypeInfo& d : kDTypes)
    if (d.name == name) return d.dtype;
  return std::nullopt;
}

/// The dtype a C++ element type is stored as.
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, std::uint8_t>)
    return DType::kU8;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return DType::kI8;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return DType::kI32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return DType::kU32;
  else if constexpr (std::is_same_v<T, float>)
    return DType::kF32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::kF64;
  else
    static_assert(sizeof(T) == 0, "no safetensors dtype for this element type");
}

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // offsets into the byte buffer that follows the header
  std::uint64_t end = 0;
  std::uint64_t elements() const {
    std::uint64_t n = 1;
    for (std::uint64_t s : shape) n *= s;  // validated not to overflow when parsed/added
    return n;
  }
  std::uint64_t bytes() const { return end - begin; }
};

namespace detail {

/// a * b, or nullopt on overflow.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

/// elements(shape) * dtype size with overflow checks.
inline std::optional<std::uint64_t> tensor_bytes(const std::vector<std::uint64_t>& shape, DType t) {
  std::optional<std::uint64_t> n = std::uint64_t{1};
  for (std::uint64_t s : shape) {
    n = checked_mul(*n, s);
    if (!n) return n;
  }
  return checked_mul(*n, dtype_size(t));
}

template <class... Parts>
[[noreturn]] inline void format_error(Parts&&... parts) {
  throw FormatError(
      ::pquant::detail::concat("pquant: safetensors: ", std::forward<Parts>(parts)...));
}

inline std::uint64_t read_u64_le(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace detail

/// A parsed, validated safetensors image. Non-owning: the bytes must outlive the view.
class SafetensorsView {
 public:
  SafetensorsView() = default;

  /// As parse(file), with `owner` keeping the bytes alive (in_place() hands out pointers).
  static SafetensorsView parse(std::span<const std::uint8_t> file,
                               std::shared_ptr<const void> owner) {
    SafetensorsView v = parse(file);
    v.owner_ = std::move(owner);
    return v;
  }

  /// Validates `file` (the whole file's bytes); throws FormatError naming the first problem.
  static SafetensorsView parse(std::span<const std::uint8_t> file) {
    using nlohmann::json;
    SafetensorsView v;
    if (file.size() < 8)
      detail::format_error("file is ", file.size(),
                           " bytes, shorter than the 8-byte header length");
    const std::uint64_t n = detail::read_u64_le(file.data());
    if (n > kMaxHeaderBytes)
      detail::format_error("header length ", n, " exceeds the limit of ", kMaxHeaderBytes,
                           " bytes");
    if (n > file.size() - 8)
      detail::format_error("header length ", n, " exceeds the ", file.size() - 8,
                           " bytes that follow the length field (truncated file?)");
    if (n < 2 || file[8] != '{')
      detail::format_error("header must be a JSON object starting with '{'");
    const auto* text = reinterpret_cast<const char*>(file.data() + 8);
    // nlohmann-json takes a NUL byte for the end of its input: whatever follows one would go
    // unread. No NUL belongs in a header (JSON has none outside escapes; padding is spaces).
    if (const void* nul = std::memchr(text, '\0', static_cast<std::size_t>(n)))
      detail::format_error("header has a NUL byte at file offset ",
                           8 + (static_cast<const char*>(nul) - text),
                           " (only spaces, 0x20, may pad the header)");

    // Duplicate keys: one set of keys per open object.
    std::vector<std::vector<std::string>> open_objects;
    std::string duplicate;
    auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
      if (event == json::parse_event_t::object_start) {
        open_objects.emplace_back();
      } else if (event == json::parse_event_t::object_end) {
        if (!open_objects.empty()) open_objects.pop_back();
      } else if (event == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
        auto& keys = open_objects.back();
        const auto& key = parsed.get_ref<const std::string&>();
        if (std::find(keys.begin(), keys.end(), key) != keys.end() && duplicate.empty())
          duplicate = key;
        keys.push_back(key);
      }
      return true;
    };
    json header;
    try {
      header = json::parse(text, text + n, on_event, /*allow_exceptions=*/true,
                           /*ignore_comments=*/false);
    } catch (const json::exception& e) {
      detail::format_error("header is not valid JSON: ", e.what());
    }
    if (!duplicate.empty()) detail::format_error("duplicate key '", duplicate, "' in the header");
    if (!header.is_object()) detail::format_error("header must be a JSON object");
    // The JSON parser also skips tabs and line breaks after the object; the format pads with
    // spaces only.
    std::uint64_t json_end = n;
    while (text[json_end - 1] == ' ') --json_end;
    if (text[json_end - 1] != '}')
      detail::format_error("header padding after the JSON object must be spaces (0x20), found "
                           "byte value ",
                           static_cast<int>(static_cast<unsigned char>(text[json_end - 1])),
                           " at file offset ", 8 + json_end - 1);

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const json& entry = it.value();
      if (name == "__metadata__") {
        if (!entry.is_object()) detail::format_error("__metadata__ must be an object");
        for (auto m = entry.begin(); m != entry.end(); ++m) {
          if (!m.value().is_string())
            detail::format_error("__metadata__ value of '", m.key(), "' must be a string");
          v.metadata_.emplace(m.key(), m.value().get<std::string>());
        }
        continue;
      }
      v.tensors_.push_back(parse_entry(name, entry));
    }

    // Contiguous, non-overlapping, covering the buffer exactly (zero-size tensors allowed).
    std::vector<TensorInfo>& ts = v.tensors_;
    std::stable_sort(ts.begin(), ts.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const std::uint64_t buffer_size = file.size() - 8 - n;
    std::uint64_t cursor = 0;
    for (const TensorInfo& t : ts) {
      if (t.begin != cursor)
        detail::format_error("tensor '", t.name, "' starts at offset ", t.begin, ", expected ",
                             cursor, " (offsets must be contiguous and non-overlapping)");
      cursor = t.end;
    }
    if (cursor != buffer_size)
      detail::format_error("tensors cover ", cursor, " bytes but the data buffer has ", buffer_size,
                           " bytes (truncated file or trailing garbage)");
    v.data_ = file.subspan(8 + n);
    v.header_bytes_ = n;
    return v;
  }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::uint64_t header_bytes() const { return header_bytes_; }
  std::uint64_t file_bytes() const { return 8 + header_bytes_ + data_.size(); }

  const TensorInfo* find(std::string_view name) const {
    for (const TensorInfo& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  /// FormatError if the tensor is missing.
  const TensorInfo& at(std::string_view name) const {
    const TensorInfo* t = find(name);
    if (t == nullptr) detail::format_error("missing tensor '", name, "'");
    return *t;
  }
  /// FormatError if the metadata key is missing.
  const std::string& meta(std::string_view key) const {
    auto it = metadata_.find(std::string(key));
    if (it == metadata_.end()) detail::format_error("missing __metadata__ key '", key, "'");
    return it->second;
  }
  std::span<const std::uint8_t> bytes(const TensorInfo& t) const {
    return data_.subspan(static_cast<std::size_t>(t.begin), static_cast<std::size_t>(t.bytes()));
  }

  /// What keeps the bytes alive (null for a view over bytes the caller manages).
  const std::shared_ptr<const void>& owner() const { return owner_; }

  /// Tensor `name` (dtype T, exact `shape`) where it lies, if the view has an owner and the data
  /// starts at an `alignment`-byte address; nullptr otherwise (then read_into copies it).
  template <class T>
  const T* in_place(std::string_view name, const std::vector<std::uint64_t>& shape,
                    std::size_t alignment) const {
    const TensorInfo& t = checked<T>(name, shape);
    const std::uint8_t* p = data_.data() + t.begin;
    if (owner_ == nullptr || t.bytes() == 0 ||
        reinterpret_cast<std::uintptr_t>(p) % alignment != 0)
      return nullptr;
    return reinterpret_cast<const T*>(p);
  }

  /// Copies tensor `name` into `out`, checking dtype and, if given, the exact shape.
  template <class T>
  void read_into(std::string_view name, std::span<T> out,
                 std::optional<std::vector<std::uint64_t>> shape = std::nullopt) const {
    const TensorInfo& t = checked<T>(name, shape);
    if (t.elements() != out.size())
      detail::format_error("tensor '", name, "' has ", t.elements(), " elements, expected ",
                           out.size());
    if (!out.empty()) std::memcpy(out.data(), data_.data() + t.begin, t.bytes());
  }
  template <class T>
  std::vector<T> read(std::string_view name) const {
    std::vector<T> out(static_cast<std::size_t>(at(name).elements()));
    read_into<T>(name, std::span<T>(out));
    return out;
  }

 private:
  // Tensor `name` with dtype T and, if given, exactly `shape` (FormatError otherwise).
  template <class T>
  const TensorInfo& checked(std::string_view name,
                            const std::optional<std::vector<std::uint64_t>>& shape) const {
    const TensorInfo& t = at(name);
    if (t.dtype != dtype_of<T>())
      detail::format_error("tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected ",
                           dtype_name(dtype_of<T>()));
    if (shape && *shape != t.shape)
      detail::format_error("tensor '", name, "' has shape ", detail::shape_string(t.shape),
                           ", expected ", detail::shape_string(*shape));
    return t;
  }

  static TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry) {
    using nlohmann::json;
    if (name.empty()) detail::format_error("tensor names must be non-empty");
    if (!entry.is_object()) detail::format_error("entry '", name, "' must be an object");
    for (auto f = entry.begin(); f != entry.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        detail::format_error("entry '", name, "' has unknown field '", f.key(), "'");
    auto field = [&](const char* key) -> const json& {
      auto f = entry.find(key);
      if (f == entry.end()) detail::format_error("entry '", name, "' lacks field '", key, "'");
      return *f;
    };
    TensorInfo t;
    t.name = name;
    const json& dt = field("dtype");
    if (!dt.is_string()) detail::format_error("entry '", name, "': dtype must be a string");
    const std::optional<DType> d = parse_dtype(dt.get_ref<const std::string&>());
    if (!d) detail::format_error("entry '", name, "': unknown dtype '", dt.get<std::string>(), "'");
    t.dtype = *d;
    const json& shape = field("shape");
    if (!shape.is_array()) detail::format_error("entry '", name, "': shape must be an array");
    for (const json& s : shape) {
      if (!s.is_number_unsigned())
        detail::format_error("entry '", name, "': shape entries must be non-negative integers");
      t.shape.push_back(s.get<std::uint64_t>());
    }
    const json& off = field("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      detail::format_error("entry '", name,
                           "': data_offsets must be two non-negative integers [begin, end]");
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    if (t.end < t.begin)
      detail::format_error("entry '", name, "': data_offsets end ", t.end, " < begin ", t.begin);
    const std::optional<std::uint64_t> nbytes = detail::tensor_bytes(t.shape, t.dtype);
    if (!nbytes)
      detail::format_error("entry '", name, "': shape ", detail::shape_string(t.shape),
                           " overflows 64-bit byte counts");
    if (*nbytes != t.end - t.begin)
      detail::format_error("entry '", name, "': shape ", detail::shape_string(t.shape), " of ",
                           dtype_name(t.dtype), " needs ", *nbytes, " bytes but data_offsets span ",
                           t.end - t.begin);
    return t;
  }

  std::vector<TensorInfo> tensors_;  // sorted by offset
  std::map<std::string, std::string> metadata_;
  std::span<const std::uint8_t> data_;
  std::uint64_t header_bytes_ = 0;
  std::shared_ptr<const void> owner_;
};

/// How SafetensorsFile::load gets the bytes.
enum class LoadMode { kRead, kMap };

/// A safetensors file loaded into memory (read into an aligned buffer, or memory-mapped). The
/// bytes live while the file object or anything holding view().owner() does.
class SafetensorsFile {
 public:
  static SafetensorsFile load(const std::string& path, LoadMode mode = LoadMode::kRead) {
    SafetensorsFile f;
    if (mode == LoadMode::kMap) {
      f.storage_ = std::make_shared<const Storage>(MappedFile(path));
    } else {
      f.storage_ = std::make_shared<const Storage>(read_file(path));
    }
    try {
      f.view_ = SafetensorsView::parse(f.storage_->bytes(), f.storage_);
    } catch (const FormatError& e) {
      throw FormatError(std::string(e.what()) + " (file '" + path + "')");
    }
    return f;
  }
  const SafetensorsView& view() const { return view_; }
  const SafetensorsView* operator->() const { return &view_; }
  bool mapped() const { return storage_ && std::holds_alternative<MappedFile>(storage_->data); }

 private:
  struct Storage {
    explicit Storage(MappedFile m) : data(std::move(m)) {}
    explicit Storage(AlignedBuffer<std::uint8_t> b) : data(std::move(b)) {}
    std::span<const std::uint8_t> bytes() const {
      if (const auto* m = std::get_if<MappedFile>(&data)) return m->bytes();
      const auto& b = std::get<AlignedBuffer<std::uint8_t>>(data);
      return {b.data(), b.size()};
    }
    std::variant<AlignedBuffer<std::uint8_t>, MappedFile> data;
  };
  std::shared_ptr<const Storage> storage_;  // heap: the view's spans stay valid when it moves
  SafetensorsView view_;
};

/// Builds a safetensors file from named tensors and string metadata.
class SafetensorsWriter {
 public:
  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }

  /// Adds a tensor (the bytes are copied). `data` must hold exactly elements(shape) * dtype size.
  void add(std::string name, DType dtype, std::vector<std::uint64_t> shape,
           std::span<const std::uint8_t> data) {
    require<ValueError>(!name.empty() && name != "__metadata__",
                        "SafetensorsWriter::add: argument 'name' must be non-empty and not "
                        "'__metadata__', got '",
                        name, "'");
    for (const Entry& e : entries_)
      require<ValueError>(e.info.name != name, "SafetensorsWriter::add: duplicate tensor name '",
                          name, "'");
    const std::optional<std::uint64_t> nbytes = detail::tensor_bytes(shape, dtype);
    require<ShapeError>(nbytes.has_value() && *nbytes == data.size(),
                        "SafetensorsWriter::add: tensor '", name, "' of shape ",
                        detail::shape_string(shape), " and dtype ", dtype_name(dtype),
                        " must have ", nbytes.value_or(0), " bytes, got ", data.size());
    Entry e;
    e.info.name = std::move(name);
    e.info.dtype = dtype;
    e.info.shape = std::move(shape);
    e.data.assign(data.begin(), data.end());
    entries_.push_back(std::move(e));
  }
  template <class T>
  void add(std::string name, std::vector<std::uint64_t> shape, std::span<const T> data) {
    add(std::move(name), dtype_of<T>(), std::move(shape),
        {reinterpret_cast<const std::uint8_t*>(data.data()), data.size_bytes()});
  }

  /// The header JSON (padded) and the tensors in file order, offsets assigned.
  std::string header() const {
    nlohmann::json h = nlohmann::json::object();
    if (!metadata_.empty()) h["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const Entry* e : file_order()) {
      h[e->info.name] = {{"dtype", dtype_name(e->info.dtype)},
                         {"shape", e->info.shape},
                         {"data_offsets", {offset, offset + e->data.size()}}};
      offset += e->data.size();
    }
    std::string text = h.dump();
    text.append((kDataAlignment - (8 + text.size()) % kDataAlignment) % kDataAlignment, ' ');
    return text;
  }

  std::vector<std::uint8_t> serialize() const {
    const std::string h = header();
    std::vector<std::uint8_t> out;
    append_length(out, h.size());
    out.insert(out.end(), h.begin(), h.end());
    for (const Entry* e : file_order()) out.insert(out.end(), e->data.begin(), e->data.end());
    return out;
  }

  /// Writes the file atomically; returns its size in bytes.
  std::uint64_t save(const std::string& path) const {
    const std::string h = header();
    std::vector<std::uint8_t> len;
    append_length(len, h.size());
    AtomicFile file(path);
    file.write(len);
    file.write(h);
    for (const Entry* e : file_order()) file.write(e->data);
    file.commit();
    return file.bytes_written();
  }

 private:
  struct Entry {
    TensorInfo info;
    std::vector<std::uint8_t> data;
  };
  // Tensors of a whole number of kDataAlignment bytes first (each then starts aligned to it),
  // then wider element types first (each aligned to its element size); stable otherwise.
  std::vector<const Entry*> file_order() const {
    std::vector<const Entry*> order;
    for (const Entry& e : entries_) order.push_back(&e);
    auto rank = [](const Entry* e) {
      return e->data.size() % kDataAlignment == 0 ? kDataAlignment : dtype_size(e->info.dtype);
    };
    std::stable_sort(order.begin(), order.end(),
                     [&](const Entry* a, const Entry* b) { return rank(a) > rank(b); });
    return order;
  }
  static void append_length(std::vector<std::uint8_t>& out, std::uint64_t n) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  }

  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
};

}  // namespace pquant::io
