/* fault_inject.c - the fault shim of fault_inject.h. */
#include "fault_inject.h"

#include <criterion/criterion.h>

#include <string.h>

#include <sqlite3.h>

fi_fault fi_io_fault, fi_mem_fault;

static int fault_now(fi_fault *f)
{
    if (!f->armed)
        return 0;
    f->calls++;
    if (f->fired) {
        if (f->persistent)
            f->hits++;
        return f->persistent;
    }
    if (--f->left > 0)
        return 0;
    f->fired = 1;
    f->hits++;
    return 1;
}

void fi_arm(fi_fault *f, int n, int persistent)
{
    *f = (fi_fault){.armed = 1, .left = n, .persistent = persistent};
}

int fi_disarm(fi_fault *f)
{
    int fired = f->fired;
    f->armed = 0;
    return fired;
}

/* ---- allocator */

static sqlite3_mem_methods real_mem;

static void *fail_malloc(int n)
{
    return fault_now(&fi_mem_fault) ? NULL : real_mem.xMalloc(n);
}

static void *fail_realloc(void *p, int n)
{
    return fault_now(&fi_mem_fault) ? NULL : real_mem.xRealloc(p, n);
}

/* ---- VFS shim */

typedef struct shim_file {
    sqlite3_file base;
    sqlite3_file *real;   /* follows this struct in the same allocation */
} shim_file;

static sqlite3_vfs *root;
static sqlite3_vfs shim_vfs;
static sqlite3_io_methods shim_io[4]; /* by the real file's iVersion */

#define REAL(f) (((shim_file *)(f))->real)

static int s_close(sqlite3_file *f) { return REAL(f)->pMethods->xClose(REAL(f)); }
static int s_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return fault_now(&fi_io_fault) ? SQLITE_IOERR_READ
                                   : REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}
static int s_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    return fault_now(&fi_io_fault) ? SQLITE_IOERR_WRITE
                                   : REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}
static int s_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return fault_now(&fi_io_fault) ? SQLITE_IOERR_TRUNCATE
                                   : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int s_sync(sqlite3_file *f, int flags)
{
    return fault_now(&fi_io_fault) ? SQLITE_IOERR_FSYNC
                                   : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int s_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int s_lock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xLock(REAL(f), l); }
static int s_unlock(sqlite3_file *f, int l) { return REAL(f)->pMethods->xUnlock(REAL(f), l); }
static int s_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
static int s_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
static int s_sector(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int s_devchar(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
static int s_shmmap(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}
static int s_shmlock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}
static void s_shmbarrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int s_shmunmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}
static int s_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}
static int s_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int s_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                  int *out_flags)
{
    (void)vfs;
    shim_file *f = (shim_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    memset(f->real, 0, (size_t)root->szOsFile);
    int rc = root->xOpen(root, name, f->real, flags, out_flags);
    /* SQLite calls xClose only when pMethods is set, even after a failed
     * open: mirror the real file. */
    if (f->real->pMethods) {
        int v = f->real->pMethods->iVersion;
        f->base.pMethods = &shim_io[v < 1 ? 1 : v > 3 ? 3 : v];
    } else {
        f->base.pMethods = NULL;
    }
    return rc;
}

static void shim_register(int as_default)
{
    root = sqlite3_vfs_find(NULL);
    cr_assert_not_null(root);
    for (int v = 1; v <= 3; v++) {
        shim_io[v] = (sqlite3_io_methods){
            .iVersion = v,
            .xClose = s_close,
            .xRead = s_read,
            .xWrite = s_write,
            .xTruncate = s_truncate,
            .xSync = s_sync,
            .xFileSize = s_size,
            .xLock = s_lock,
            .xUnlock = s_unlock,
            .xCheckReservedLock = s_reserved,
            .xFileControl = s_fcntl,
            .xSectorSize = s_sector,
            .xDeviceCharacteristics = s_devchar,
            .xShmMap = v >= 2 ? s_shmmap : NULL,
            .xShmLock = v >= 2 ? s_shmlock : NULL,
            .xShmBarrier = v >= 2 ? s_shmbarrier : NULL,
            .xShmUnmap = v >= 2 ? s_shmunmap : NULL,
            .xFetch = v >= 3 ? s_fetch : NULL,
            .xUnfetch = v >= 3 ? s_unfetch : NULL,
        };
    }
    /* Everything but xOpen is the default VFS's own: none of those use the
     * VFS pointer they are handed beyond what the copy keeps. */
    shim_vfs = *root;
    shim_vfs.zName = "faulty";
    shim_vfs.pNext = NULL;
    shim_vfs.szOsFile = (int)sizeof(shim_file) + root->szOsFile;
    shim_vfs.xOpen = s_open;
    cr_assert_eq(sqlite3_vfs_register(&shim_vfs, as_default ? 1 : 0), SQLITE_OK);
    if (as_default)
        cr_assert_eq(sqlite3_vfs_find(NULL), &shim_vfs);
}

void fi_install(int as_default)
{
    cr_assert_eq(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem), SQLITE_OK);
    sqlite3_mem_methods m = real_mem;
    m.xMalloc = fail_malloc;
    m.xRealloc = fail_realloc;
    cr_assert_eq(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK,
                 "SQLite was initialised before the test could hook it");
    cr_assert_eq(sqlite3_initialize(), SQLITE_OK);
    shim_register(as_default);
}
