#!/bin/sh
# vk_driver_lifetime_cli.sh FACEPAY_CLI - `facepay backends` under the fake
# driver ctest names in VK_ICD_FILENAMES: it must exit 0 (in the ASan+UBSan
# build LeakSanitizer makes it fail if the driver's process-lifetime state
# was lost when the loader unloaded it) and refuse the Vulkan plugin for
# having no device (so the fake driver really was the one loaded).
out=$("$1" backends 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -ne 0 ]; then
    echo "FAIL: facepay backends exited $rc"
    exit 1
fi
if ! printf '%s\n' "$out" | grep -q 'libfacepay-backend-vulkan.so.*no Vulkan device'; then
    echo "FAIL: the Vulkan plugin was not refused for lack of a device"
    exit 1
fi
echo "ok: no leak, plugin refused by the fake driver"
