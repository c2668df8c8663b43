# expect_exit(<code> <stderr-or-stdout regex> <command> <args>...): runs the command and fails the
# test unless it exits with <code> and its output (stdout + stderr) matches the regex.
# Included by the tools' command-line tests (cli_test.cmake).
function(expect_exit code regex)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                  TIMEOUT 60)
  string(REPLACE ";" " " cmd "${ARGN}")
  if(NOT rc STREQUAL "${code}")
    message(FATAL_ERROR "expected exit ${code}, got ${rc}: ${cmd}\nstdout: ${out}\nstderr: ${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "output does not match '${regex}': ${cmd}\nstdout: ${out}\nstderr: ${err}")
  endif()
  # A failure is one line on stderr (no usage dump, no stack of messages).
  if(NOT code EQUAL 0)
    string(STRIP "${err}" e)
    if(e MATCHES "\n")
      message(FATAL_ERROR "expected one line on stderr: ${cmd}\nstderr: ${err}")
    endif()
  endif()
endfunction()
