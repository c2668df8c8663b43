// libFuzzer target: a packed model file as an attacker would write it. The safetensors header
// parser and load_model must either build a model or throw one of pquant's exception types;
// anything else (another exception, a sanitizer report, a hang, an allocation beyond
// -rss_limit_mb) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "pquant/core/error.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto view = pquant::io::SafetensorsView::parse(std::span<const std::uint8_t>(data, size));
    const pquant::inference::PackedModel m = pquant::inference::load_model(view);
    // Accepted: writing it again and reading that back must succeed too.
    const std::vector<std::uint8_t> bytes = pquant::inference::model_writer(m).serialize();
    (void)pquant::inference::load_model(pquant::io::SafetensorsView::parse(bytes));
  } catch (const pquant::Error&) {
  }
  return 0;
}
