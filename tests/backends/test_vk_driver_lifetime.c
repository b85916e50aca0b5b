/*
 * test_vk_driver_lifetime.c - the Vulkan plugin keeps the driver libraries
 * the loader brought in resident after the instance is destroyed (see
 * vk_device.c). ctest points VK_ICD_FILENAMES at fake_vk_icd.c's library:
 * a driver with no devices that, like Mesa on AMD Zen CPUs, keeps 128 bytes
 * of process-lifetime state in a static. Were it unloaded, that pointer
 * would be lost (LeakSanitizer fails the ASan build at exit) and a reload
 * would allocate it again. This checks residency directly, so the Release
 * build catches the regression too, on any CPU.
 */
#define _GNU_SOURCE /* RTLD_NOLOAD */
#include "test_util.h"

#include "facepay/backend.h"
#include "facepay/facepay.h"

#include <criterion/criterion.h>

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

static const char *vulkan_rejection(void)
{
    for (int i = 0; i < fpay_backend_rejected_count(); i++) {
        const char *path = NULL, *reason = NULL;
        cr_assert_eq(fpay_backend_rejected(i, &path, &reason), FPAY_OK);
        if (strstr(path, "libfacepay-backend-vulkan"))
            return reason;
    }
    return NULL;
}

Test(vk_driver_lifetime, driver_stays_loaded_after_the_probe_instance_is_destroyed)
{
    const char *icd = getenv("FPAY_TEST_FAKE_ICD");
    const char *manifest = getenv("VK_ICD_FILENAMES");
    cr_assert(icd && manifest && strstr(manifest, "fake_vk_icd"),
              "ctest sets FPAY_TEST_FAKE_ICD and VK_ICD_FILENAMES to the fake driver");
    cr_assert_null(dlopen(icd, RTLD_NOW | RTLD_NOLOAD), "the fake driver is loaded already");

    /* The registry loads the plugins; the Vulkan probe creates an instance
     * through the real loader, finds no device and destroys it. */
    cr_assert_null(fpay_backend_find("vulkan"), "the fake driver has no device");
    const char *why = vulkan_rejection();
    cr_assert_not_null(why, "the Vulkan plugin was built, so it must be found and refused");
    cr_assert(strstr(why, "no Vulkan device"), "refused for another reason: %s", why);

    void *h = dlopen(icd, RTLD_NOW | RTLD_NOLOAD);
    cr_expect_not_null(h, "the driver was unloaded with the instance: its process-lifetime "
                          "state is lost and leaks");
    if (h)
        dlclose(h);
}
