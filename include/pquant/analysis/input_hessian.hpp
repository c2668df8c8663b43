// InputHessian: H = 2 X^T X / n of a linear layer's inputs X [n x in], accumulated in double over
// any number of batches of rows: the Hessian of the layer's squared output error with respect to
// one row of its weights (the quantity GPTQ, SpQR and the Optimal Brain Surgeon score use,
// docs/method.md section 1).
#pragma once

#include <cstddef>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "pquant/core/error.hpp"
#include "pquant/core/matrix.hpp"

namespace pquant::analysis {

class InputHessian {
 public:
  explicit InputHessian(std::size_t in_features)
      : in_(in_features), xtx_(in_features * in_features) {
    require<ShapeError>(in_features > 0, "InputHessian: 'in_features' must be > 0");
  }

  /// Adds the rows of x [tokens x in] to X^T X (double products and sums; each entry sums the
  /// tokens in order, so the result does not depend on the thread count).
  void add(MatrixView<const float> x) {
    require<ShapeError>(x.cols == in_, "InputHessian::add: argument 'x' must have ", in_,
                        " columns, got ", x.cols);
    // Row i of the upper triangle belongs to one task: no two tasks write the same entry.
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, in_, 8),
                      [&](const tbb::blocked_range<std::size_t>& b) {
                        for (std::size_t i = b.begin(); i != b.end(); ++i) {
                          double* hi = xtx_.data() + i * in_;
                          for (std::size_t t = 0; t < x.rows; ++t) {
                            const float* xt = &x(t, 0);
                            const double xi = xt[i];
                            if (xi == 0) continue;
                            for (std::size_t j = i; j < in_; ++j) hi[j] += xi * xt[j];
                          }
                        }
                      });
    tokens_ += x.rows;
  }

  std::size_t in_features() const { return in_; }
  /// Rows added so far (n).
  std::size_t tokens() const { return tokens_; }

  /// H = 2 X^T X / n, row-major [in x in], symmetric (ValueError before any row was added).
  std::vector<double> hessian() const {
    require<ValueError>(tokens_ > 0, "InputHessian::hessian: no inputs were added");
    std::vector<double> h(in_ * in_);
    const double scale = 2.0 / static_cast<double>(tokens_);
    for (std::size_t i = 0; i < in_; ++i)
      for (std::size_t j = i; j < in_; ++j)
        h[i * in_ + j] = h[j * in_ + i] = scale * xtx_[i * in_ + j];
    return h;
  }

 private:
  std::size_t in_;
  std::vector<double> xtx_;  // upper triangle of X^T X (row-major; the lower part unused)
  std::size_t tokens_ = 0;
};

}  // namespace pquant::analysis
