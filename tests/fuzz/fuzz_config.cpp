// libFuzzer target: the model configuration JSON, read by both parsers that take it from a file:
// the packed model's 'pquant.config' (InferenceConfig::from_json) and train_lm's checkpoint meta
// (train_lm::model_from_json, which generate --export uses). Each must accept the text or throw
// one of pquant's exception types; an accepted configuration must describe a model whose sizes
// are within the parser's limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "pquant/core/error.hpp"
#include "pquant/inference/model_config.hpp"
#include "run_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    const pquant::inference::InferenceConfig c = pquant::inference::InferenceConfig::from_json(j);
    // Accepted: its JSON form must read back to the same configuration.
    const auto again = pquant::inference::InferenceConfig::from_json(c.to_json());
    if (again.to_json() != c.to_json()) std::abort();
  } catch (const pquant::Error&) {
  }
  try {
    const train_lm::ModelSpec s = train_lm::model_from_json(j, "fuzz.json");
    if (s.config.d_model > train_lm::kMaxWidth || s.config.layers > train_lm::kMaxLayers ||
        s.config.experts > train_lm::kMaxExperts)
      std::abort();
  } catch (const pquant::Error&) {
  }
  return 0;
}
