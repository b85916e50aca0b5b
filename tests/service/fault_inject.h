/*
 * fault_inject.h - SQLite-style fault injection for the store and service
 * suites (sqlite.org/testing.html): fail the Nth I/O call or the Nth
 * allocation of SQLite.
 *
 * I/O faults come from a VFS shim ("faulty") over the default VFS whose
 * files fail xRead/xWrite/xSync/xTruncate once a countdown reaches zero.
 * Allocation faults come from SQLITE_CONFIG_MALLOC, which must be set before
 * SQLite initialises: call fi_install first thing in each test's process
 * (Criterion runs each test in a fresh one), before anything opens SQLite.
 *
 * Each fault runs in two modes: transient (only the Nth call fails, as a
 * full disk that frees up) and persistent (every call from the Nth on
 * fails, as a disk that went away).
 */
#ifndef FPAY_TEST_FAULT_INJECT_H
#define FPAY_TEST_FAULT_INJECT_H

typedef struct fi_fault {
    int armed;
    int left;         /* calls until the one that fails */
    int fired;
    int persistent;
    long hits;        /* calls that failed */
    long calls;       /* calls seen while armed */
} fi_fault;

/* I/O calls of files opened through the "faulty" VFS; SQLite's allocations. */
extern fi_fault fi_io_fault, fi_mem_fault;

/* Arms f to fail its nth call from now (n >= 1), and with persistent every
 * call after it too. */
void fi_arm(fi_fault *f, int n, int persistent);
/* Disarms f; returns whether it fired since it was armed. */
int fi_disarm(fi_fault *f);

/* Hooks SQLite's allocator, initialises SQLite and registers the VFS shim
 * "faulty" over the default VFS; as the new default when as_default (for
 * code that opens its databases with the default VFS). Asserts when SQLite
 * was already initialised. Call once per process. */
void fi_install(int as_default);

#endif
