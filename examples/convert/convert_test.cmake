# ctest: convert imports the golden Hugging Face checkpoints into packed models that generate runs;
# a train_lm checkpoint exported to the HF naming imports back and runs too; bad command lines are
# exit 2, unusable inputs exit 1 with one line naming the file.
# Invoked as: cmake -DCONVERT=<bin> -DTRAIN_LM=<bin> -DGENERATE=<bin> -DDATA=<tests/data/hf>
#                   -DWORK=<dir> -P convert_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
foreach(kind bitnet158 bitnet158_packed pquant)
  expect_exit(0 "imported .* -> .*bits/weight, linear" "${CONVERT}" --import-hf "${DATA}/${kind}"
              --model "${WORK}/${kind}.safetensors")
  # The golden models have a vocabulary of 16: a tab (byte 9) is a valid prompt.
  string(REGEX REPLACE "_packed" "" label "${kind}")
  expect_exit(0 "\\[${label}, 2 layers, d 16\\]" "${GENERATE}" --model "${WORK}/${kind}.safetensors"
              --prompt "\t" --tokens 4)
endforeach()

set(train_args --variant pquant --experts 2 --r 16 --d-model 32 --layers 2 --heads 2 --d-ff 64
               --context 32 --batch 4 --steps 2 --warmup 1 --corpus-bytes 20000)
execute_process(COMMAND "${TRAIN_LM}" ${train_args} --save "${WORK}/run.ckpt"
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_lm failed (${rc}):\n${out}")
endif()
expect_exit(0 "exported .*run.ckpt \\(pquant\\) -> " "${CONVERT}" --export-hf "${WORK}/run.ckpt"
            --out "${WORK}/hf")
file(READ "${WORK}/hf/config.json" config)
string(JSON arch GET "${config}" architectures 0)
string(JSON experts GET "${config}" pquant_num_experts)
if(NOT arch STREQUAL "PQuantForCausalLM" OR NOT experts EQUAL 2)
  message(FATAL_ERROR "exported config.json: ${config}")
endif()
# PyTorch reads the export with safetensors.torch.load_file, every shape as config.json declares.
set(torch_ok 1)
if(PYTHON)
  execute_process(COMMAND "${PYTHON}" -c "import safetensors.torch" RESULT_VARIABLE torch_ok
                  OUTPUT_QUIET ERROR_QUIET)
endif()
if(torch_ok EQUAL 0)
  expect_exit(0 "hf_check: .*47 tensors \\(torch.float32\\)" "${PYTHON}" "${HF_CHECK}" "${WORK}/hf")
else()
  message(STATUS "convert: PyTorch with safetensors not importable by '${PYTHON}': the "
                 "load_file check of the export is skipped")
endif()
expect_exit(0 "imported" "${CONVERT}" --import-hf "${WORK}/hf" --model "${WORK}/back.safetensors")
expect_exit(0 "\\[pquant, 2 layers, d 32\\]" "${GENERATE}" --model "${WORK}/back.safetensors"
            --prompt "The " --tokens 4)

expect_exit(2 "give --import-hf DIR --model OUT or --export-hf CKPT --out DIR" "${CONVERT}")
expect_exit(2 "--import-hf excludes --export-hf" "${CONVERT}" --import-hf a --model b
            --export-hf c --out d)
expect_exit(2 "--hf-weight-scale: .*times" "${CONVERT}" --import-hf a --model b --hf-weight-scale times)
expect_exit(2 "--import-hf requires --model" "${CONVERT}" --import-hf a)
expect_exit(1 "^convert: .*${WORK}/none: has no config.json" "${CONVERT}" --import-hf
            "${WORK}/none" --model "${WORK}/x.safetensors")
file(WRITE "${WORK}/bad/config.json" "{")
file(WRITE "${WORK}/bad/model.safetensors" "")
expect_exit(1 "^convert: .*config.json: is not a JSON object" "${CONVERT}" --import-hf
            "${WORK}/bad" --model "${WORK}/x.safetensors")
message(STATUS "convert: imports, exports and rejections as documented")
