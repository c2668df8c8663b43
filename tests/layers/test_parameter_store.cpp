// ParameterStore: tensors carved from one arena, and sizes that must be refused before anything
// is allocated (a wrapped product or sum would register a tensor smaller than its shape).
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "pquant/layers/parameter_store.hpp"

namespace pquant {
namespace {

TEST(ParameterStore, TensorsStartOnCacheLinesAndDoNotOverlap) {
  ParameterStore store;
  const ParamId a = store.add("a", 3, 5, ParamRole::kWeight);
  const ParamId b = store.add("b", 7, 1, ParamRole::kWeight);
  const ParamId c = store.add("c", 1000, 100, ParamRole::kWeight);  // forces the arena to grow
  EXPECT_EQ(store.info(a).offset, 0u);
  EXPECT_EQ(store.info(b).offset, 16u);  // 15 floats rounded up to 16 (one 64-byte line)
  EXPECT_EQ(store.info(c).offset, 32u);
  EXPECT_EQ(store.parameter_count(), 15u + 7u + 100000u);
  EXPECT_EQ(store.values().size(), 32u + 100000u);
  // Values written before the arena grew survive the move.
  store.value(a)(2, 4) = 1.5f;
  store.add("d", 4096, 64, ParamRole::kWeight);
  EXPECT_EQ(store.value(a)(2, 4), 1.5f);
  EXPECT_THROW(store.add("a", 1, 1, ParamRole::kWeight), ValueError);
  EXPECT_THROW(store.add("e", 0, 4, ParamRole::kWeight), ShapeError);
}

TEST(ParameterStore, SizesThatWrapOrExceedTheLimitAreShapeErrors) {
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  ParameterStore store;
  store.add("a", 1, 1, ParamRole::kWeight);
  // rows * cols wraps (2^32 * 2^32 = 2^64 = 0 mod 2^64).
  EXPECT_THROW(store.add("wrap", std::size_t{1} << 32, std::size_t{1} << 32, ParamRole::kWeight),
               ShapeError);
  // offset + size wraps.
  EXPECT_THROW(store.add("sum", 1, kMax - 8, ParamRole::kWeight), ShapeError);
  // A size a doubling arena could never reach (the loop wrapped to 0 and spun before).
  EXPECT_THROW(store.add("huge", 1, kMax - 64 * 4, ParamRole::kWeight), ShapeError);
  EXPECT_THROW(store.add("limit", 1, ParameterStore::kMaxArenaElements, ParamRole::kWeight),
               ShapeError);
  // The refused tensors were not registered and the store still works.
  EXPECT_EQ(store.infos().size(), 1u);
  store.add("b", 2, 2, ParamRole::kWeight);
  EXPECT_EQ(store.parameter_count(), 5u);
}

}  // namespace
}  // namespace pquant
