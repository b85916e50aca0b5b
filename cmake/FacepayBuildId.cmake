# The build id carried by fpay_build_id(), every benchmark row and every stored
# template: git hash (+ -dirty), compiler, build type.
find_package(Git QUIET)
set(FACEPAY_GIT_HASH "unknown")
if(GIT_FOUND AND EXISTS "${PROJECT_SOURCE_DIR}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse --short=12 HEAD
                  WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
                  OUTPUT_VARIABLE FACEPAY_GIT_HASH OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  execute_process(COMMAND "${GIT_EXECUTABLE}" status --porcelain --untracked-files=no
                  WORKING_DIRECTORY "${PROJECT_SOURCE_DIR}"
                  OUTPUT_VARIABLE _fpay_dirty OUTPUT_STRIP_TRAILING_WHITESPACE
                  ERROR_QUIET)
  if(NOT FACEPAY_GIT_HASH)
    set(FACEPAY_GIT_HASH "unknown")
  endif()
  if(_fpay_dirty)
    string(APPEND FACEPAY_GIT_HASH "-dirty")
  endif()
endif()
set(FACEPAY_BUILD_ID
    "${FACEPAY_GIT_HASH} ${CMAKE_C_COMPILER_ID}-${CMAKE_C_COMPILER_VERSION} ${CMAKE_BUILD_TYPE}")
if(FACEPAY_SANITIZE)
  string(APPEND FACEPAY_BUILD_ID "+asan+ubsan")
endif()
