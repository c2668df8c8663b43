// libFuzzer target: the model configuration JSON, read by both parsers that take it from a file:
// the packed model's structure ('pquant.structure', strict JSON: exact fields and types, no
// duplicate keys) and train_lm's checkpoint meta (train_lm::model_from_json, which generate
// --export uses). Each must accept the text or throw one of pquant's exception types; an accepted
// configuration must be within the parser's limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "pquant/core/error.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/model_structure.hpp"
#include "run_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  namespace inf = pquant::inference;
  try {
    const inf::ModelStructure s =
        inf::detail::parse_structure(inf::detail::parse_strict_json(text, "fuzz structure"));
    if (s.vocab > inf::kMaxVocab || s.d_model > inf::kMaxWidth || s.context > inf::kMaxContext ||
        s.layers() > inf::kMaxLayers)
      std::abort();
    // The tensors an accepted structure implies (what load_model checks a file against).
    (void)inf::detail::expected_tensors(s);
  } catch (const pquant::Error&) {
  }
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  try {
    const train_lm::ModelSpec s = train_lm::model_from_json(j, "fuzz.json");
    if (s.config.d_model > train_lm::kMaxWidth || s.config.layers > train_lm::kMaxLayers ||
        s.config.experts > train_lm::kMaxExperts)
      std::abort();
  } catch (const pquant::Error&) {
  }
  return 0;
}
