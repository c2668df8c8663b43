# ctest: train_lm rejects bad command lines before doing any work: exit 2 and one line naming the
# flag and the allowed range; a file it cannot use is exit 1 naming the file and why.
# Invoked as: cmake -DTRAIN_LM=<binary> -DWORK=<dir> -P cli_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(MAKE_DIRECTORY "${WORK}")
set(t "${TRAIN_LM}")
expect_exit(0 "Usage: train_lm.*--variant.*--experts UINT:in \\[1, 8\\]" ${t} --help)
expect_exit(2 "^train_lm: --steps: must be an integer in \\[1, 1000000000\\], got '-1'" ${t} --steps -1)
expect_exit(2 "--steps: must be an integer" ${t} --steps 1.5)
expect_exit(2 "--heads: must divide --d-model \\(128\\) into even head widths; allowed: 1, 2, 4, 8, 16, 32, 64, got 3"
            ${t} --heads 3 --d-model 128)
expect_exit(2 "--d-model: must be even" ${t} --d-model 33 --heads 1)
expect_exit(2 "--experts: must be an integer in \\[1, 8\\], got '65'" ${t} --experts 65)
expect_exit(2 "--embed-std: must be a finite number in \\[0, 10\\], got 'nan'" ${t} --embed-std nan)
expect_exit(2 "--phase2-end: must be a finite number in \\[0, 0.4\\], got '0.5'" ${t} --phase2-end 0.5)
expect_exit(2 "--phase2-end: applies to --schedule two-phase only, got --schedule cosine"
            ${t} --phase2-end 0.1 --schedule cosine)
expect_exit(2 "--lr: must be a finite number in \\(0, 100\\], got 'inf'" ${t} --lr inf)
expect_exit(2 "--lr: must be a finite number in \\(0, 100\\], got '0'" ${t} --lr 0)
expect_exit(2 "--weight-decay: must be a finite number in \\[0, 1\\]" ${t} --weight-decay -0.1)
expect_exit(2 "--variant: must be fp, bitnet, bitnet158, pquant, pquant-fixed-scales, bitnet-keep5, bitnet-keep1.3, bitnet-row, bitnet-group64 or bitnet-kmeans, got 'gpt'" ${t} --variant gpt)
expect_exit(2 "--d-model: must be an integer in \\[2, 65536\\]" ${t} --d-model 18446744073709551552)
expect_exit(2 "--layers: must be an integer in \\[1, 4096\\]" ${t} --layers 100000)
expect_exit(2 "--batch: must be an integer in \\[1, 65536\\]" ${t} --batch 1000000)
expect_exit(2 "--r: must be in \\[1, 383\\] \\(below --d-ff 384\\), got 384" ${t} --r 384)
expect_exit(2 "--warmup: must be in \\[0, 9\\] \\(below --steps\\), got 10" ${t} --steps 10 --warmup 10)
expect_exit(2 "--stop-at: must be in \\[0, 10\\]" ${t} --steps 10 --stop-at 11)
expect_exit(2 "--corpus-bytes: must give more than --context \\+ 1" ${t} --corpus-bytes 100)
expect_exit(2 "not expected: --bogus" ${t} --bogus)
# Sizes within every flag's range whose least memory no machine has: refused before allocating.
expect_exit(2 "^train_lm: --d-model/--d-ff/--layers/--batch/--context: the run needs at least [0-9.]+ GiB"
            ${t} --d-model 65536 --d-ff 65536 --layers 4096 --heads 2)
# Octal-looking numbers are decimal: --steps 010 is ten steps, so --warmup 9 is allowed, 10 is not.
expect_exit(2 "--warmup: must be in \\[0, 9\\]" ${t} --steps 010 --warmup 10)
expect_exit(1 "^train_lm: .*'/dev/zero' is a character device, expected a regular file" ${t} --data /dev/zero)
expect_exit(1 "^train_lm: .*'${WORK}' is a directory, expected a regular file" ${t} --data "${WORK}")
expect_exit(1 "^train_lm: .*cannot open '${WORK}/missing.txt': No such file" ${t} --data "${WORK}/missing.txt")
message(STATUS "train_lm rejected every bad command line")
