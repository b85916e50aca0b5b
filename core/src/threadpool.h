/*
 * threadpool.h - the small pool that splits one op's work over the threads
 * of a session (internal). A pool of N threads runs the caller plus N-1
 * workers; with one thread the CPU backend creates no pool at all and calls
 * kernels directly, so single-threaded runs pay nothing.
 */
#ifndef FACEPAY_THREADPOOL_H
#define FACEPAY_THREADPOOL_H

#include <stddef.h>

typedef struct fpay_threadpool fpay_threadpool;

/* fn computes tasks [begin, end) of a job. */
typedef void (*fpay_task_fn)(void *ctx, size_t begin, size_t end);

/* threads >= 2; NULL if threads could not be started. */
fpay_threadpool *fpay_threadpool_create(int threads);
void fpay_threadpool_free(fpay_threadpool *pool);
int fpay_threadpool_threads(const fpay_threadpool *pool);

/* Runs tasks 0..n_tasks-1 split into one contiguous range per thread, the
 * caller taking the first; returns when all are done. One job at a time
 * (a session is used by one thread at a time). */
void fpay_threadpool_run(fpay_threadpool *pool, size_t n_tasks, fpay_task_fn fn,
                         void *ctx);

#endif
