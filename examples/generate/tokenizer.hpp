// The text <-> token ids mapping of generate: bytes (the default, train_lm's byte-level data), or a
// SentencePiece model (--tokenizer, the tokenizer.model scripts/tokenize_bpe.py writes next to the
// token file train_lm --tokens trained on). SentencePiece is optional: without it (CMake did not
// find libsentencepiece-dev) --tokenizer is refused with a message saying so.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pquant/core/error.hpp"

#ifdef PQUANT_WITH_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace generate {

class Tokenizer {
 public:
  /// Bytes are tokens.
  Tokenizer() = default;

  /// A SentencePiece model; IoError naming `path` if it cannot be loaded, ValueError if its
  /// vocabulary differs from the model's.
  Tokenizer(const std::string& path, std::size_t vocab) {
#ifdef PQUANT_WITH_SENTENCEPIECE
    sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = sp_->Load(path);
    pquant::require<pquant::IoError>(status.ok(), "generate: --tokenizer '", path,
                                     "' is not a SentencePiece model: ", status.ToString());
    const auto pieces = static_cast<std::size_t>(sp_->GetPieceSize());
    pquant::require<pquant::ValueError>(
        pieces == vocab, "generate: --tokenizer '", path, "' has ", pieces,
        " pieces, the model's vocabulary is ", vocab,
        " (use the tokenizer whose token file the model was trained on)");
#else
    (void)vocab;
    throw pquant::ValueError("generate: --tokenizer '" + path +
                             "' needs SentencePiece, and this generate was built without it "
                             "(install libsentencepiece-dev, scripts/install-deps.sh, and rebuild)");
#endif
  }

  bool bytes() const { return sp_ == nullptr; }

  /// The prompt's token ids (each checked against the vocabulary by the caller).
  std::vector<int> encode(const std::string& text) const {
#ifdef PQUANT_WITH_SENTENCEPIECE
    if (sp_) {
      std::vector<int> ids;
      const auto status = sp_->Encode(text, &ids);
      pquant::require<pquant::ValueError>(status.ok(), "generate: cannot encode --prompt: ",
                                          status.ToString());
      return ids;
    }
#endif
    std::vector<int> ids;
    for (unsigned char ch : text) ids.push_back(ch);
    return ids;
  }

  /// The text of generated ids (bytes: one char each).
  std::string decode(const std::vector<int>& ids) const {
#ifdef PQUANT_WITH_SENTENCEPIECE
    if (sp_) {
      std::string text;
      const auto status = sp_->Decode(ids, &text);
      pquant::require<pquant::ValueError>(status.ok(), "generate: cannot decode the output: ",
                                          status.ToString());
      return text;
    }
#endif
    std::string text;
    for (int id : ids) text.push_back(static_cast<char>(id));
    return text;
  }

 private:
#ifdef PQUANT_WITH_SENTENCEPIECE
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
#else
  std::unique_ptr<int> sp_;  // always empty: bytes
#endif
};

}  // namespace generate
