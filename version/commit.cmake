# Writes OUT (version_commit.h) with the commit of the tree in SOURCE_DIR: `git describe
# --always --dirty --abbrev=12` (a hash, "-dirty" when the tree has changes), COMMIT when it is
# given (a build from a tarball of a known commit), else "unknown". Run at each build by
# version/CMakeLists.txt; the file is rewritten only when its text changes.
if(NOT COMMIT)
  set(COMMIT unknown)
  find_program(GIT git)
  if(GIT)
    execute_process(COMMAND ${GIT} -C ${SOURCE_DIR} describe --always --dirty --abbrev=12
                            --match=NeVeRmAtCh
                    OUTPUT_VARIABLE described OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE status ERROR_QUIET)
    if(status EQUAL 0 AND described)
      set(COMMIT ${described})
    endif()
  endif()
endif()
set(text "#define CPLOW_COMMIT \"${COMMIT}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
