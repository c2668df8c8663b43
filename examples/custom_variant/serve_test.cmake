# ctest: custom_variant trains, exports and reloads its application-defined variant; its last
# stdout line is JSON with the parity error and the model path; `generate --model` then serves the
# same file (no knowledge of the variant's type) and stops at the context with a note on stderr.
# Invoked as: cmake -DCUSTOM=<binary> -DGENERATE=<binary> -DWORK=<dir> -P serve_test.cmake
file(MAKE_DIRECTORY "${WORK}")
set(model "${WORK}/custom_variant.safetensors")
file(REMOVE "${model}")
execute_process(COMMAND "${CUSTOM}" --steps 50 --tokens 24 --out "${model}"
                OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "custom_variant failed (${rc}):\n${out}")
endif()
string(STRIP "${out}" text)
string(REGEX REPLACE ".*\n" "" last "${text}")
foreach(key parity_max_abs_err generated_tokens model_bytes model)
  string(JSON value ERROR_VARIABLE err GET "${last}" ${key})
  if(err)
    message(FATAL_ERROR "the last line lacks '${key}': ${last}")
  endif()
endforeach()
string(JSON path GET "${last}" model)
string(JSON n GET "${last}" generated_tokens)
string(JSON bytes GET "${last}" model_bytes)
file(SIZE "${model}" size)
if(NOT path STREQUAL model OR NOT n EQUAL 24 OR NOT bytes EQUAL size)
  message(FATAL_ERROR "unexpected report: ${last} (file ${size} bytes)")
endif()
execute_process(COMMAND "${GENERATE}" --model "${model}" --prompt "The " --tokens 100 --json
                OUTPUT_VARIABLE gen ERROR_VARIABLE gen_err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generate --model failed (${rc}):\n${gen}\n${gen_err}")
endif()
string(STRIP "${gen}" gtext)
string(REGEX REPLACE ".*\n" "" glast "${gtext}")
string(JSON variant GET "${glast}" variant)
string(JSON generated GET "${glast}" generated_tokens)
# Context 64, prompt 4: 61 tokens fit (the last one is sampled from the final logits).
if(NOT variant STREQUAL "ternary-kmeans-pquant" OR NOT generated EQUAL 61
   OR NOT gen_err MATCHES "context of 64 positions is full")
  message(FATAL_ERROR "generate on the custom model: ${glast}\n${gen_err}")
endif()
message(STATUS "custom variant served: ${glast}")
