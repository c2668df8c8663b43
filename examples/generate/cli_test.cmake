# ctest: generate rejects bad command lines before doing any work: exit 2 and one line naming the
# flag and the allowed range; a file it cannot use is exit 1 naming the file and why.
# Invoked as: cmake -DGENERATE=<binary> -DWORK=<dir> -P cli_test.cmake
include("${CMAKE_CURRENT_LIST_DIR}/../common/expect_exit.cmake")
file(MAKE_DIRECTORY "${WORK}")
set(g "${GENERATE}")
expect_exit(0 "Usage: generate.*--model TEXT REQUIRED.*--top-p FLOAT:in \\(0, 1\\]" ${g} --help)
expect_exit(2 "^generate: --model is required" ${g} --prompt hi)
expect_exit(2 "--tokens: must be an integer in \\[0, 16777216\\], got '-3'" ${g} --model m --tokens -3)
expect_exit(2 "--top-p: must be a finite number in \\(0, 1\\], got '0'" ${g} --model m --top-p 0)
expect_exit(2 "--temperature: must be a finite number in \\[0, 100\\], got 'nan'" ${g} --model m --temperature nan)
expect_exit(2 "--threads: must be an integer in \\[1, 4096\\], got '0'" ${g} --model m --threads 0)
expect_exit(2 "--read excludes --mmap" ${g} --model m --read --mmap)
expect_exit(1 "^generate: .*'/dev/zero' is a character device" ${g} --model /dev/zero)
expect_exit(1 "^generate: .*'${WORK}' is a directory" ${g} --model "${WORK}" --read)
message(STATUS "generate rejected every bad command line")
