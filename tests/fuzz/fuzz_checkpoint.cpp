// libFuzzer target: a training checkpoint as an attacker would write it. CheckpointReader must
// accept it or throw one of pquant's exception types. Most mutations only break the checksum, so
// every input that parses as safetensors is also resealed (its checksum recomputed) and read
// again, then restored into a parameter store shaped after its own latent-weight tensors: this
// reaches the checks behind the checksum (metadata keys, step counters, moments, finiteness).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/io/safetensors.hpp"
#include "pquant/layers/parameter_store.hpp"
#include "pquant/training/adamw.hpp"
#include "pquant/training/checkpoint.hpp"

namespace {

std::vector<std::uint8_t> reseal(const pquant::io::SafetensorsView& v) {
  std::vector<pquant::detail::DigestTensor> digest;
  for (const pquant::io::TensorInfo& t : v.tensors())
    digest.push_back({t.name, t.dtype, &t.shape, v.bytes(t)});
  const std::string sum = pquant::detail::checkpoint_digest(v.metadata(), std::move(digest));
  pquant::io::SafetensorsWriter w;
  for (const auto& [key, value] : v.metadata()) w.set_metadata(key, value);
  w.set_metadata(std::string(pquant::detail::kChecksumKey), sum);
  for (const pquant::io::TensorInfo& t : v.tensors()) w.add(t.name, t.dtype, t.shape, v.bytes(t));
  return w.serialize();
}

void read_and_restore(std::span<const std::uint8_t> bytes) {
  const pquant::CheckpointReader r = pquant::CheckpointReader::parse(bytes, "fuzz.ckpt");
  (void)r.parameter_elements();
  // A store with the file's own latent weights (2-D F32 tensors that are not moments).
  pquant::ParameterStore store;
  const auto view = pquant::io::SafetensorsView::parse(bytes);
  for (const pquant::io::TensorInfo& t : view.tensors()) {
    if (t.dtype != pquant::io::DType::kF32 || t.shape.size() != 2 || t.name.starts_with("adamw."))
      continue;
    if (t.shape[0] == 0 || t.shape[1] == 0) continue;
    store.add(t.name, t.shape[0], t.shape[1], pquant::ParamRole::kWeight);
  }
  pquant::AdamW opt(store);
  r.restore(store, opt);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  try {
    read_and_restore(input);
  } catch (const pquant::Error&) {
  }
  try {
    const auto view = pquant::io::SafetensorsView::parse(input);
    const std::vector<std::uint8_t> sealed = reseal(view);
    read_and_restore(sealed);
  } catch (const pquant::Error&) {
  }
  return 0;
}
