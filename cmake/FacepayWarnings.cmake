# Warnings every target of ours gets: -Wall -Wextra (and -Werror by default),
# with both gcc and clang.
function(facepay_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow
                         -Wstrict-prototypes -Wmissing-prototypes -Wvla
                         -Wformat=2)
  if(FACEPAY_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_compile_definitions(${target} PRIVATE _POSIX_C_SOURCE=200809L)
endfunction()
