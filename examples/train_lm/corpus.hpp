// The corpus train_lm uses without --data: English-like prose the program generates itself.
//
// A seeded stochastic grammar (characters, places, actions, dialogue, and small arithmetic facts
// whose answer depends on earlier words) writes `bytes` bytes of text. It is the same text for the
// same seed on every machine (pquant::Rng, no std:: distributions), needs no file and no download,
// and has real structure at several ranges: spelling inside words, agreement inside sentences,
// names that recur within a paragraph, and sums a model can only get right by reading the operands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pquant/layers/init.hpp"

namespace train_lm {

class CorpusWriter {
 public:
  explicit CorpusWriter(std::uint64_t seed) : rng_(seed) {}

  std::string write(std::size_t bytes) {
    std::string out;
    out.reserve(bytes + 512);
    while (out.size() < bytes) paragraph(out);
    out.resize(bytes);
    return out;
  }

 private:
  template <std::size_t N>
  std::string_view pick(const std::string_view (&words)[N]) {
    return words[rng_.below(N)];
  }
  bool chance(double p) { return rng_.uniform() < p; }

  static constexpr std::string_view kNames[] = {"Anna", "Tomas", "Mira", "Edwin", "Clara", "Oskar",
                                                "Lena", "Hugo",  "Ida",  "Felix", "Rosa",  "Arthur",
                                                "Nell", "Jonas", "Vera", "Simon"};
  static constexpr std::string_view kRoles[] = {
      "the miller",   "the old king",    "a young fox", "the baker",
      "the shepherd", "a tired soldier", "the queen",   "the blacksmith",
      "a small girl", "the fisherman",   "the weaver",  "a grey wolf"};
  static constexpr std::string_view kPlaces[] = {
      "the river",   "the mill",         "the dark forest", "the market",
      "the castle",  "the harbour",      "the old bridge",  "the high meadow",
      "the village", "the quiet chapel", "the cellar",      "the road to the north"};
  static constexpr std::string_view kThings[] = {
      "a loaf of bread", "the silver key",   "an old map",     "a basket of apples",
      "the red lantern", "a letter",         "the iron ring",  "a wooden box",
      "the last candle", "a bundle of wool", "the golden cup", "a heavy stone"};
  static constexpr std::string_view kCarry[] = {"carried",   "found",  "hid",    "lost",
                                                "sold",      "mended", "opened", "kept",
                                                "gave away", "dropped"};
  static constexpr std::string_view kGo[] = {"walked to", "ran to",        "came back from",
                                             "rode to",   "looked across", "slept near",
                                             "waited by", "sang beside"};
  static constexpr std::string_view kWhen[] = {
      "In the morning",  "At dusk",          "Before the rain",     "After supper",
      "Late that night", "On the third day", "When the bells rang", "Long ago"};
  static constexpr std::string_view kHow[] = {
      "slowly",         "quietly",         "at once",  "with great care",
      "without a word", "again and again", "in secret"};
  static constexpr std::string_view kSay[] = {"said",  "asked",    "whispered",
                                              "cried", "answered", "called"};
  static constexpr std::string_view kLines[] = {
      "where is the key",          "the river is rising",
      "we must leave before dawn", "I have never seen such a thing",
      "bring me the lantern",      "nobody will believe us",
      "the bread is still warm",   "listen to the wind",
      "the king is coming",        "count the apples"};
  static constexpr std::string_view kNumbers[] = {
      "zero",     "one",     "two",     "three",     "four",    "five",   "six",
      "seven",    "eight",   "nine",    "ten",       "eleven",  "twelve", "thirteen",
      "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"};

  void subject(std::string& out, std::string_view hero, bool capital) {
    std::string s(chance(0.6) ? hero : pick(kRoles));
    if (capital && !s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 32);
    out += s;
  }

  void sentence(std::string& out, std::string_view hero) {
    switch (rng_.below(5)) {
      case 0:
        out += pick(kWhen);
        out += ", ";
        subject(out, hero, false);
        out += " ";
        out += pick(kGo);
        out += " ";
        out += pick(kPlaces);
        break;
      case 1:
        subject(out, hero, true);
        out += " ";
        out += pick(kCarry);
        out += " ";
        out += pick(kThings);
        if (chance(0.5)) {
          out += " ";
          out += pick(kHow);
        }
        break;
      case 2: {
        out += "\"";
        std::string line(pick(kLines));
        if (line[0] >= 'a' && line[0] <= 'z') line[0] = static_cast<char>(line[0] - 32);
        out += line;
        out += line.starts_with("Where") ? "?\" " : ",\" ";
        out += pick(kSay);
        out += " ";
        out += hero;
        break;
      }
      case 3: {
        const std::size_t a = rng_.below(10), b = rng_.below(9);
        subject(out, hero, true);
        out += " counted ";
        out += kNumbers[a];
        out += " and ";
        out += kNumbers[b];
        out += ", and that makes ";
        out += kNumbers[a + b];
        break;
      }
      default:
        subject(out, hero, true);
        out += " ";
        out += pick(kGo);
        out += " ";
        out += pick(kPlaces);
        out += " and ";
        out += pick(kCarry);
        out += " ";
        out += pick(kThings);
        break;
    }
    out += ". ";
  }

  void paragraph(std::string& out) {
    const std::string_view hero = pick(kNames);  // recurs through the paragraph
    const std::size_t n = 3 + rng_.below(5);
    for (std::size_t i = 0; i < n; ++i) sentence(out, hero);
    out.back() = '\n';
    out += "\n";
  }

  pquant::Rng rng_;
};

/// `bytes` bytes of the generated corpus for `seed`.
inline std::string generate_corpus(std::size_t bytes, std::uint64_t seed = 2026) {
  return CorpusWriter(seed).write(bytes);
}

}  // namespace train_lm
