// LossReport: what one forward + backward pass of a language model reports to its caller.
#pragma once

namespace pquant {

/// The objective's parts for one batch. The gradients a pass accumulates are those of
/// loss + aux_loss.
struct LossReport {
  double loss = 0;      // mean cross-entropy over the batch's tokens (nats)
  double aux_loss = 0;  // auxiliary losses added to the objective (router load balancing), if any
};

}  // namespace pquant
