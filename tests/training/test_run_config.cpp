// train_lm's recorded run configuration as generate --export reads it back: every field checked
// for presence, JSON type and range before a model is allocated (a negative or huge size used to
// wrap around and loop or abort).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "../../examples/train_lm/run_config.hpp"

namespace {

nlohmann::json good() {
  return {{"variant", "pquant"}, {"d_model", 32}, {"layers", 2}, {"heads", 2},
          {"d_ff", 64},          {"context", 32}, {"experts", 2}, {"r", 16}};
}

std::string error_of(const nlohmann::json& j) {
  try {
    train_lm::model_from_json(j, "c.safetensors");
  } catch (const pquant::FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(RunConfig, AGoodConfigurationGivesTheModel) {
  const train_lm::ModelSpec s = train_lm::model_from_json(good(), "c");
  EXPECT_EQ(s.variant, "pquant");
  EXPECT_EQ(s.config.d_model, 32u);
  EXPECT_EQ(s.config.layers, 2u);
  EXPECT_EQ(s.config.experts, 2u);
  EXPECT_EQ(s.config.r, 16u);
}

TEST(RunConfig, EveryBadFieldIsAFormatErrorNamingIt) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* message;
  };
  const Case cases[] = {
      {"d_model", -64, "'d_model' must be an integer in [2, 65536], got -64"},
      {"d_model", 18446744073709551552ULL, "'d_model' must be an integer in [2, 65536]"},
      {"d_model", 32.5, "'d_model' must be an integer"},
      {"d_model", "32", "'d_model' must be an integer"},
      {"layers", 100000, "'layers' must be an integer in [1, 4096]"},
      {"experts", 65, "'experts' must be an integer in [1, 8], got 65"},
      {"context", true, "'context' must be an integer"},
      {"variant", 3, "'variant' must be fp, bitnet, bitnet158 or pquant, got 3"},
      {"variant", "gpt", "got \"gpt\""},
      {"heads", 3, "'d_model' (32) must be a multiple of 'heads' (3)"},
      {"r", 64, "'r' (64) must be below 'd_ff' (64)"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good();
    j[c.key] = c.value;
    const std::string e = error_of(j);
    EXPECT_NE(e.find(c.message), std::string::npos) << c.key << ": " << e;
    EXPECT_NE(e.find("'c.safetensors'"), std::string::npos) << e;
  }
  nlohmann::json missing = good();
  missing.erase("layers");
  EXPECT_NE(error_of(missing).find("'layers' must be an integer in [1, 4096], got nothing"),
            std::string::npos);
  EXPECT_NE(error_of(nlohmann::json::array()).find("records no train_lm configuration"),
            std::string::npos);
}

}  // namespace
