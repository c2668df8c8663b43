// A user's program: pack a matrix of signs and check what comes back.
#include <pquant/pquant.hpp>

#include <cstdio>

int main() {
  pquant::PackedMatrix<pquant::SignBit, pquant::PerRow> w(3, 13);
  for (std::size_t r = 0; r < w.rows(); ++r) {
    w.params()[r] = 0.5f;
    for (std::size_t c = 0; c < w.cols(); ++c) w.set_code(r, c, (r + c) % 2);
  }
  const float v = w.dequantized(2, 5);  // (2 + 5) odd -> +1 * 0.5
  std::printf("consumer: pquant %s, w(2,5) = %g\n", pquant::kVersionString, v);
  return v == 0.5f ? 0 : 1;
}
