// Must not compile: an Engine bound to a temporary model would read freed memory. The control
// build (PQUANT_CONTROL) binds a named model and must compile.
#include "pquant/inference/engine.hpp"
#include "pquant/inference/model_file.hpp"

int main(int argc, char** argv) {
  if (argc < 2) return 0;
#ifdef PQUANT_CONTROL
  const pquant::inference::PackedModel model = pquant::inference::load_model(argv[1]);
  pquant::inference::Engine engine(model);
#else
  pquant::inference::Engine engine(pquant::inference::load_model(argv[1]));
#endif
  return static_cast<int>(engine.position());
}
