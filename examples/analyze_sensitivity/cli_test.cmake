# ctest: train_lm on token files (raw uint16 and llm.c's header) and analyze_sensitivity end to
# end: a tiny model trained for a few steps, then its sensitivity maps; unknown projections, too
# few calibration tokens and bad token files are refused with one line naming the problem.
# Invoked as: cmake -DTRAIN_LM=<binary> -DANALYZE=<binary> -DWORK=<dir> -P cli_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(t "${TRAIN_LM}")
set(a "${ANALYZE}")
# A text of even size is also a raw uint16 token file: each id is two bytes, little-endian.
string(REPEAT "the cat sat on the mat, the dog lay in the fog. " 100 text)
file(WRITE "${WORK}/corpus.txt" "${text}")
set(small --d-model 16 --heads 2 --layers 1 --d-ff 32 --r 8 --context 32 --batch 2 --steps 3
          --threads 1)
expect_exit(2 "--tokens: needs --vocab" ${t} --tokens "${WORK}/corpus.txt")
expect_exit(2 "--vocab: is the vocabulary of a --tokens file" ${t} --vocab 300)
expect_exit(1 "token 0 is 26740, not below the vocabulary size 300" ${t} --tokens
            "${WORK}/corpus.txt" --vocab 300 ${small})
file(WRITE "${WORK}/odd.bin" "abc")
expect_exit(1 "'${WORK}/odd.bin' has an odd size \\(3 bytes\\)" ${t} --tokens "${WORK}/odd.bin"
            --vocab 300 ${small})
expect_exit(0 "training tokens \\(vocab 65536\\)" ${t} --tokens "${WORK}/corpus.txt" --vocab 65536
            ${small})
# llm.c's header: magic 20240520, version 1, token count, then 253 more int32; ids follow.
execute_process(COMMAND sh -c "printf '\\210\\330\\064\\001\\001\\000\\000\\000\\004\\000\\000\\000'; head -c 1012 /dev/zero; printf '\\001\\000\\002\\000\\003\\000\\004\\000'"
                OUTPUT_FILE "${WORK}/llmc.bin")
expect_exit(1 "ByteDataset: the data has 4 tokens, too few" ${t} --tokens "${WORK}/llmc.bin" --vocab 8
            ${small})
execute_process(COMMAND sh -c "printf '\\210\\330\\064\\001\\001\\000\\000\\000\\011\\000\\000\\000'; head -c 1012 /dev/zero; printf '\\001\\000'"
                OUTPUT_FILE "${WORK}/short.bin")
expect_exit(1 "its llm.c header announces 9 tokens \\(18 bytes\\), the file has 2 bytes" ${t} --tokens
            "${WORK}/short.bin" --vocab 8 ${small})
execute_process(COMMAND sh -c "printf '\\241\\331\\064\\001\\001\\000\\000\\000'; head -c 1016 /dev/zero"
                OUTPUT_FILE "${WORK}/u32.bin")
expect_exit(1 "is an llm.c file of uint32 tokens \\(magic 20240801\\)" ${t} --tokens "${WORK}/u32.bin"
            --vocab 8 ${small})

# A byte-level BitNet model; analysis over the corpus.
expect_exit(0 "saved checkpoint" ${t} --variant bitnet ${small} --data "${WORK}/corpus.txt"
            --save "${WORK}/bitnet.safetensors")
expect_exit(1 "^analyze_sensitivity: .*no projection 'blocks.0.attn.x'; its projections are: blocks.0.attn.q"
            ${a} --model "${WORK}/bitnet.safetensors" --data "${WORK}/corpus.txt" --projections
            blocks.0.attn.x)
expect_exit(1 "projection 'blocks.0.ffn.down' 16 input rows, fewer than its input width 32"
            ${a} --model "${WORK}/bitnet.safetensors" --data "${WORK}/corpus.txt" --calib-tokens 16
            --projections blocks.0.ffn.down --out-dir "${WORK}/maps")
expect_exit(2 "--data: give the calibration text" ${a} --model "${WORK}/bitnet.safetensors")
execute_process(COMMAND ${a} --model "${WORK}/bitnet.safetensors" --data "${WORK}/corpus.txt"
                        --calib-tokens 256 --out-dir "${WORK}/maps" --json
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "analyze_sensitivity failed (${rc}): ${out}")
endif()
string(REGEX MATCH "[^\n]+\n?$" last "${out}")
string(JSON n LENGTH "${last}" projections)
if(NOT n EQUAL 7)  # q, k, v, o, gate, up, down of the one block
  message(FATAL_ERROR "expected 7 projections, got ${n}: ${last}")
endif()
string(JSON name GET "${last}" projections 6 name)
string(JSON gini GET "${last}" projections 6 gini)
string(JSON share GET "${last}" projections 6 top1pct_share)
string(JSON map GET "${last}" projections 6 heatmap)
if(NOT name STREQUAL "blocks.0.ffn.down" OR NOT EXISTS "${map}" OR gini LESS 0 OR NOT gini LESS 1
   OR share LESS 0.01)
  message(FATAL_ERROR "unexpected entry: ${last}")
endif()
file(READ "${map}" m)
string(JSON rows GET "${m}" pool rows)
string(JSON cols GET "${m}" pool cols)
if(NOT rows EQUAL 16 OR NOT cols EQUAL 32)
  message(FATAL_ERROR "the down projection's map should be 16 x 32: ${rows} x ${cols}")
endif()
message(STATUS "token files and analyze_sensitivity behave")
