# ctest: a model trained with train_lm is exported (generate --export), reloaded from the
# safetensors file and generates text; --json's last line has the documented keys. A checkpoint
# given where a model belongs, and a model given to --resume, are refused saying what they are.
# Greedy decoding twice (read vs mmap loading) must give the same text.
# Invoked as: cmake -DTRAIN_LM=<binary> -DGENERATE=<binary> -DWORK=<dir> -P export_generate_test.cmake
file(MAKE_DIRECTORY "${WORK}")
set(ckpt "${WORK}/model.ckpt")
set(model "${WORK}/model.safetensors")
file(REMOVE "${ckpt}" "${model}")
set(train_args --variant pquant --experts 2 --r 16 --d-model 32 --layers 2 --heads 2 --d-ff 64
               --context 32 --batch 4 --steps 6 --warmup 2 --corpus-bytes 30000)
execute_process(COMMAND "${TRAIN_LM}" ${train_args} --save "${ckpt}"
                OUTPUT_VARIABLE train RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_lm failed (${rc}):\n${train}")
endif()
execute_process(COMMAND "${GENERATE}" --export "${ckpt}" --model "${model}" --prompt "The "
                        --tokens 20 --json
                OUTPUT_VARIABLE first RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT first MATCHES "bits/weight, linear")
  message(FATAL_ERROR "generate --export failed (${rc}):\n${first}")
endif()
execute_process(COMMAND "${GENERATE}" --model "${model}" --prompt "The " --tokens 20 --read --json
                OUTPUT_VARIABLE second RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generate failed (${rc}):\n${second}")
endif()
foreach(out first second)
  string(STRIP "${${out}}" text)
  string(REGEX REPLACE ".*\n" "" last "${text}")
  foreach(key prompt_tokens generated_tokens prefill_tokens_per_s decode_tokens_per_s model_bytes
              bits_per_weight text)
    string(JSON value ERROR_VARIABLE err GET "${last}" ${key})
    if(err)
      message(FATAL_ERROR "the last line of --json output lacks '${key}': ${last}")
    endif()
  endforeach()
  string(JSON ${out}_text GET "${last}" text)
  string(JSON ${out}_n GET "${last}" generated_tokens)
  string(JSON ${out}_bytes GET "${last}" model_bytes)
endforeach()
file(SIZE "${model}" size)
if(NOT first_n EQUAL 20 OR NOT second_n EQUAL 20 OR NOT first_bytes EQUAL size)
  message(FATAL_ERROR "expected 20 tokens and model_bytes ${size}: ${first_n} ${second_n} ${first_bytes}")
endif()
if(NOT first_text STREQUAL second_text)
  message(FATAL_ERROR "greedy text differs between runs: '${first_text}' vs '${second_text}'")
endif()
# A corrupt model file is a clean error (exit 1, message names the file), not a crash.
file(WRITE "${WORK}/bad.safetensors" "not a model")
execute_process(COMMAND "${GENERATE}" --model "${WORK}/bad.safetensors" --prompt "x"
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 1 OR NOT err MATCHES "bad.safetensors")
  message(FATAL_ERROR "a corrupt file should fail cleanly naming it (rc ${rc}): ${err}")
endif()
# Files of the wrong kind: each message says what the file is and what to do.
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
expect_exit(1 "^generate: .*'${ckpt}' is a training checkpoint, not a packed model; export it first: generate --export ${ckpt} --model"
            "${GENERATE}" --model "${ckpt}" --prompt "x")
expect_exit(1 "^train_lm: .*'${model}' is a packed model file \\(for inference\\), not a training checkpoint.*resume from the checkpoint it was exported from"
            "${TRAIN_LM}" ${train_args} --resume "${model}")
message(STATUS "exported and generated: '${first_text}'")
