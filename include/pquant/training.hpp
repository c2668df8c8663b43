// Umbrella header for pquant/training: AdamW, gradient clipping, schedules, the byte-level data
// pipeline, checkpoints, metrics and the Trainer. See docs/training.md.
#pragma once

#include "pquant/training/adamw.hpp"
#include "pquant/training/grad_clip.hpp"
#include "pquant/training/schedule.hpp"
#include "pquant/training/byte_dataset.hpp"
#include "pquant/training/checkpoint.hpp"
#include "pquant/training/flip_ratio.hpp"
#include "pquant/training/trainer.hpp"
