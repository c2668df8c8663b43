// The variant registry: every name maps to the variant of that name, unknown names list the known.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <type_traits>

#include "pquant/model/variant_registry.hpp"

namespace pquant {
namespace {

TEST(VariantRegistry, EveryNameVisitsTheVariantOfThatName) {
  EXPECT_EQ(PaperVariants::size, 4u);
  EXPECT_EQ(PaperVariants::names_text(), "fp, bitnet, bitnet158 or pquant");
  for (std::string_view name : PaperVariants::names()) {
    const std::string_view visited = visit_variant(
        name, []<class V>(std::type_identity<V>) { return DecoderModel<V>::variant_name(); });
    EXPECT_EQ(visited, name);
  }
  const bool is_pquant = visit_variant("pquant", []<class V>(std::type_identity<V>) {
    return std::is_same_v<V, variants::PQuant<>>;
  });
  EXPECT_TRUE(is_pquant);
}

TEST(VariantRegistry, UnknownNamesAreValueErrorsListingTheKnownOnes) {
  auto visit = [](std::string_view name) {
    visit_variant(name, []<class V>(std::type_identity<V>) {});
  };
  EXPECT_THROW(visit("gpt"), ValueError);
  EXPECT_THROW(visit(""), ValueError);
  EXPECT_THROW(visit("FP"), ValueError);
  try {
    visit("bitnet2");
    FAIL() << "no exception";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("'bitnet2', expected fp, bitnet, bitnet158 or pquant"),
              std::string::npos)
        << e.what();
  }
}

TEST(VariantRegistry, ACustomListVisitsOnlyItsOwnVariants) {
  using Two = VariantList<variants::BitNet, variants::FP>;
  EXPECT_EQ(Two::names_text(), "bitnet or fp");
  EXPECT_TRUE(Two::contains("fp"));
  EXPECT_FALSE(Two::contains("pquant"));
  EXPECT_EQ(visit_variant<Two>("fp", []<class V>(std::type_identity<V>) { return V::kName; }),
            "fp");
  EXPECT_THROW(visit_variant<Two>("pquant", []<class V>(std::type_identity<V>) {}), ValueError);
}

}  // namespace
}  // namespace pquant
