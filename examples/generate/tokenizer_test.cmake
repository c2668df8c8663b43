# ctest: BPE end to end. scripts/tokenize_bpe.py trains a SentencePiece tokenizer and writes a
# token file, train_lm trains on it (--tokens), generate exports the checkpoint and generates with
# --tokenizer: the prompt is encoded and the output decoded through the same tokenizer. A
# tokenizer whose size differs from the model's vocabulary, and a file that is no tokenizer, are
# refused. Skipped (SKIPPED:) when the project's Python has no SentencePiece.
# Invoked as: cmake -DTRAIN_LM=<binary> -DGENERATE=<binary> -DWORK=<dir> -DROOT=<source dir>
#             -P tokenizer_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
execute_process(COMMAND "${ROOT}/scripts/pquant_python.sh" OUTPUT_VARIABLE python
                OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
if(rc EQUAL 0)
  execute_process(COMMAND "${python}" -c "import sentencepiece" RESULT_VARIABLE rc)
endif()
if(NOT rc EQUAL 0)
  message(STATUS "SKIPPED: the project's Python has no SentencePiece (scripts/install-deps.sh)")
  return()
endif()
# A corpus of varied lines (a fixed word rotation; 150 KB).
set(words the king and queen of a castle rode through green fields while bells rang over towns)
list(LENGTH words n)
set(text "")
foreach(i RANGE 2999)
  set(line "")
  foreach(j RANGE 9)
    math(EXPR k "(${i} * 7 + ${j} * ${j} * 3 + ${i} / 5) % ${n}")
    list(GET words ${k} w)
    list(APPEND line "${w}")
  endforeach()
  list(JOIN line " " line)  # single spaces, none at the ends: SentencePiece keeps such text exact
  string(APPEND text "${line}\n")
endforeach()
file(WRITE "${WORK}/corpus.txt" "${text}")
execute_process(COMMAND "${python}" "${ROOT}/scripts/tokenize_bpe.py" --input "${WORK}/corpus.txt"
                        --vocab 320 --out-dir "${WORK}/bpe"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tokenize_bpe.py failed (${rc}):\n${out}\n${err}")
endif()
set(size --d-model 32 --layers 1 --heads 2 --d-ff 64 --context 32 --batch 4 --steps 6 --warmup 2)
execute_process(COMMAND "${TRAIN_LM}" --variant bitnet ${size} --tokens "${WORK}/bpe/tokens.bin"
                        --vocab 320 --save "${WORK}/bpe.ckpt"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_lm --tokens failed (${rc}):\n${out}\n${err}")
endif()
# The prompt's token count and the output text, checked with SentencePiece's Python binding: the
# same tokenizer encodes "the king" to as many tokens, and decodes the generated token_ids to the
# printed text.
set(model "${WORK}/bpe/tokenizer.model")
execute_process(COMMAND "${GENERATE}" --export "${WORK}/bpe.ckpt" --model "${WORK}/bpe.safetensors"
                        --tokenizer "${model}" --prompt "the king" --tokens 8 --temperature 0 --json
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generate --tokenizer failed (${rc}):\n${out}\n${err}")
endif()
string(STRIP "${out}" out)
string(REGEX REPLACE ".*\n" "" last "${out}")
file(WRITE "${WORK}/last.json" "${last}")
execute_process(
  COMMAND "${python}" -c "
import json, sys, sentencepiece as spm
p = spm.SentencePieceProcessor(model_file=sys.argv[1])
j = json.load(open(sys.argv[2], encoding='utf-8'))
want_prompt = len(p.encode('the king'))
want_text = p.decode(j['token_ids']).encode('utf-8', 'replace').decode('utf-8')
ok = j['prompt_tokens'] == want_prompt and j['text'] == want_text and len(j['token_ids']) == 8
print(want_prompt, j['prompt_tokens'], repr(want_text), repr(j['text']))
sys.exit(0 if ok else 1)" "${model}" "${WORK}/last.json"
  OUTPUT_VARIABLE check ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generate's prompt tokens or text differ from SentencePiece's:\n${check}${err}")
endif()
# Without the tokenizer the same model reads bytes: 8 prompt tokens.
expect_exit(0 "prompt 8 tokens" "${GENERATE}" --model "${WORK}/bpe.safetensors" --prompt "the king"
            --tokens 4)
# A byte-level model (vocabulary 256) with the 320-piece tokenizer; a file that is no tokenizer.
execute_process(COMMAND "${TRAIN_LM}" --variant bitnet ${size} --corpus-bytes 20000
                        --save "${WORK}/bytes.ckpt" OUTPUT_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_lm failed (${rc})")
endif()
expect_exit(1 "--tokenizer '.*tokenizer.model' has 320 pieces, the model's vocabulary is 256"
            "${GENERATE}" --export "${WORK}/bytes.ckpt" --model "${WORK}/bytes.safetensors"
            --tokenizer "${WORK}/bpe/tokenizer.model")
expect_exit(1 "--tokenizer '.*corpus.txt' is not a SentencePiece model" "${GENERATE}" --model
            "${WORK}/bytes.safetensors" --tokenizer "${WORK}/corpus.txt")
message(STATUS "generate encoded and decoded through the SentencePiece tokenizer")
