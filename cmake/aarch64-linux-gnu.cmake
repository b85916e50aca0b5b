# Cross toolchain for aarch64 Linux (Debian's gcc-aarch64-linux-gnu), with
# the arm64 libraries from Debian multiarch (tools/packages-arm64.txt) in
# /usr/lib/aarch64-linux-gnu and the target's libc in /usr/aarch64-linux-gnu.
# ctest runs the test programs through qemu-aarch64 (no binfmt needed).
#   cmake -S . -B build-arm64 -G Ninja \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64;-L;/usr/aarch64-linux-gnu")

# Host tools from the host; libraries, headers and packages from the root
# path first, then the multiarch folders (/usr/lib/aarch64-linux-gnu: CMake
# searches <prefix>/lib/<CMAKE_LIBRARY_ARCHITECTURE>, never the x86 one).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Never the host's own folders: its multiarch headers and libraries, and
# /usr/local (what was built and installed for the host, a host libfacepay
# included). find_* skips these folders (not their subfolders:
# /usr/local/lib/aarch64-linux-gnu stays usable).
list(APPEND CMAKE_IGNORE_PATH
  /usr/include/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
  /usr/local/include /usr/local/lib /usr/local/lib64)

# pkg-config: only the arm64 .pc files (libsodium), never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")
