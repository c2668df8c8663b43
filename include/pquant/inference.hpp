// Packed inference: deployable models (latent weights dropped), export from trained models, model
// files, the decoding engine (KV cache, batched prefill, every quantizer's packed form),
// sampling, and checkpoints in the Hugging Face naming (import and export).
// Needs nlohmann-json (model files) and the runtime-dispatched kernels (pquant_dispatch_impl).
#pragma once

#include "pquant/inference/engine.hpp"
#include "pquant/inference/export.hpp"
#include "pquant/inference/hf_config.hpp"
#include "pquant/inference/hf_export.hpp"
#include "pquant/inference/hf_import.hpp"
#include "pquant/inference/kv_cache.hpp"
#include "pquant/inference/model_file.hpp"
#include "pquant/inference/model_structure.hpp"
#include "pquant/inference/packed_linear.hpp"
#include "pquant/inference/packed_model.hpp"
#include "pquant/inference/random_model.hpp"
#include "pquant/inference/sampler.hpp"
