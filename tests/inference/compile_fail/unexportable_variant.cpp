// Must not compile: 8-bit k-means codebooks have no packed form; export_model's diagnostic names
// the projection (attention) and the quantizer. The control build uses 4-bit codebooks.
#include "pquant/inference/export.hpp"
#include "pquant/model/variants.hpp"
#include "pquant/quantizers/kmeans_codebook.hpp"

#ifdef PQUANT_CONTROL
inline constexpr unsigned kBits = 4;
#else
inline constexpr unsigned kBits = 8;
#endif

struct Codebook : pquant::variants::Dense<pquant::BitLinear<pquant::KMeansCodebook<kBits>>> {
  static constexpr std::string_view kName = "codebook";
};

int main() {
  pquant::ModelConfig c;
  c.vocab = 16;
  c.d_model = 16;
  c.layers = 1;
  c.heads = 2;
  c.d_ff = 32;
  c.context = 8;
  pquant::DecoderModel<Codebook> model(c, 1);
  return static_cast<int>(pquant::inference::export_model(model).blocks.size()) - 1;
}
