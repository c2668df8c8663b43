# ctest: train_lm's checkpoints and guardrails from the command line.
#  - --save writes a safetensors file whose header Python's json/struct can read;
#  - a diverging run (--lr 10) stops naming the step, exits 1 and writes no checkpoint, nor
#    replaces a good one; with --save-every the last good checkpoint stays and resumes;
#  - a bad --save target is refused before step 1; stale temp files of a killed save are removed;
#  - --resume refuses a checkpoint written with other options, naming the flag.
# Invoked as: cmake -DTRAIN_LM=<binary> -DWORK=<dir> [-DPYTHON=<python3>] -P checkpoint_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(t "${TRAIN_LM}")
set(tiny --variant pquant --experts 2 --r 16 --d-model 32 --layers 2 --heads 2 --d-ff 64
         --context 32 --batch 4 --corpus-bytes 30000)
set(ckpt "${WORK}/run.safetensors")

# A healthy run; a stale temp file of an earlier killed save disappears with the next save.
file(WRITE "${ckpt}.tmp.Ab12Cd" "partial")
expect_exit(0 "saved checkpoint .*run.safetensors at step 6" ${t} ${tiny} --steps 6 --warmup 2 --save "${ckpt}")
if(EXISTS "${ckpt}.tmp.Ab12Cd")
  message(FATAL_ERROR "the stale temp file was not removed by the next save")
endif()
if(PYTHON)
  # The documented one-liner, from a file (CMake lists would split it at its semicolons).
  file(WRITE "${WORK}/header.py" "import json,struct; f=open('${ckpt}','rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(f.read(n)).keys())\n")
  expect_exit(0 "__metadata__.*training.step" ${PYTHON} "${WORK}/header.py")
endif()
file(SHA256 "${ckpt}" good)

# Divergence: stops at step 2 naming it, exit 1, the good checkpoint is untouched.
expect_exit(1 "^train_lm: .*step 2 diverged \\(loss [0-9.]+, limit 20.*no checkpoint was written"
            ${t} ${tiny} --steps 6 --warmup 2 --lr 10 --save "${ckpt}")
file(SHA256 "${ckpt}" after)
if(NOT after STREQUAL good)
  message(FATAL_ERROR "a diverged run replaced the good checkpoint")
endif()
expect_exit(1 "step 2 diverged.*no checkpoint was written" ${t} ${tiny} --steps 6 --lr 10 --save "${WORK}/new.safetensors")
if(EXISTS "${WORK}/new.safetensors")
  message(FATAL_ERROR "a diverged run wrote a checkpoint")
endif()
# With --save-every 1 the last checkpoint is the step before the divergence, and it resumes (into
# the same divergence, deterministically).
set(slow ${tiny} --steps 20 --lr 10 --warmup 10)
expect_exit(1 "step 3 diverged.*the last checkpoint, .*every.safetensors, is of step 2"
            ${t} ${slow} --save "${WORK}/every.safetensors" --save-every 1)
expect_exit(1 "resumed from .*every.safetensors at step 2.*step 3 diverged"
            ${t} ${slow} --resume "${WORK}/every.safetensors")
# Skipping instead: a run that never recovers stops after 10 skipped steps in a row.
expect_exit(1 "step 12 diverged .* after 10 skipped steps in a row"
            ${t} ${tiny} --steps 20 --lr 10 --on-divergence skip)

# Save targets that cannot be written are refused before training (exit 2, nothing printed).
expect_exit(2 "^train_lm: --save: .*'${WORK}': it is a directory" ${t} ${tiny} --save "${WORK}")
expect_exit(2 "^train_lm: --save: .*the directory '${WORK}/missing' does not exist"
            ${t} ${tiny} --save "${WORK}/missing/x.safetensors")
expect_exit(2 "^train_lm: --save-every: needs --save" ${t} ${tiny} --save-every 3)

# Resume: every option that shapes the run is compared.
expect_exit(0 "resumed from .* at step 6" ${t} ${tiny} --steps 6 --warmup 2 --resume "${ckpt}")
expect_exit(1 "was written with --weight-decay 0.1, this run has 0.05"
            ${t} ${tiny} --steps 6 --warmup 2 --weight-decay 0.05 --resume "${ckpt}")
expect_exit(1 "was written with --embed-std unset, this run has 0.5"
            ${t} ${tiny} --steps 6 --warmup 2 --embed-std 0.5 --resume "${ckpt}")
expect_exit(1 "was written with --corpus-bytes 30000, this run has 40000"
            ${t} ${tiny} --steps 6 --warmup 2 --corpus-bytes 40000 --resume "${ckpt}")
expect_exit(1 "was written with --steps 6, this run has 12"
            ${t} ${tiny} --steps 12 --warmup 2 --resume "${ckpt}")
file(WRITE "${WORK}/bad.txt" "not a checkpoint")
expect_exit(1 "'${WORK}/bad.txt' is not a training checkpoint \\(not a valid safetensors file"
            ${t} ${tiny} --steps 6 --warmup 2 --resume "${WORK}/bad.txt")
message(STATUS "checkpoints and guardrails behave")
