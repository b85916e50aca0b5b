/*
 * test_threadpool.c - the intra-op pool (core/src/threadpool.c) that the CPU
 * backend splits each op over. What the kernels rely on: every task of a
 * job runs exactly once; each thread gets one contiguous range, the caller
 * the first; fpay_threadpool_run returns only after every range is done;
 * back-to-back jobs (a model's ops) lose no wake-up and see no stale
 * function or context. Checked for task counts below, at and above the
 * thread count, and over many jobs in a row.
 */
#include "threadpool.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASKS 4096
#define MAX_THREADS 8

typedef struct job {
    atomic_int runs[MAX_TASKS];  /* times each task ran */
    atomic_int ranges;           /* fn calls */
    size_t begin[MAX_THREADS + 1];
    size_t end[MAX_THREADS + 1];
    pthread_t who[MAX_THREADS + 1];
} job;

static void count_tasks(void *ctx, size_t begin, size_t end)
{
    job *j = ctx;
    int k = atomic_fetch_add(&j->ranges, 1);
    if (k <= MAX_THREADS) {
        j->begin[k] = begin;
        j->end[k] = end;
        j->who[k] = pthread_self();
    }
    for (size_t i = begin; i < end && i < MAX_TASKS; i++)
        atomic_fetch_add(&j->runs[i], 1);
}

static job *new_job(void)
{
    job *j = calloc(1, sizeof *j);
    cr_assert_not_null(j);
    return j;
}

/* Runs n tasks on a pool of `threads` and checks the split. */
static void check_split(fpay_threadpool *p, int threads, size_t n)
{
    job *j = new_job();
    fpay_threadpool_run(p, n, count_tasks, j);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&j->runs[i]), 1, "%d threads, %zu tasks: task %zu ran %d times",
                     threads, n, i, atomic_load(&j->runs[i]));
    int ranges = atomic_load(&j->ranges);
    /* Nobody is called with an empty range. */
    int want = n < (size_t)threads ? (int)n : threads;
    cr_assert_eq(ranges, want, "%d threads, %zu tasks: %d ranges", threads, n, ranges);
    size_t per = n / (size_t)threads, covered = 0;
    bool caller_has_first = n == 0;
    for (int k = 0; k < ranges; k++) {
        size_t len = j->end[k] - j->begin[k];
        cr_assert(len == per || len == per + 1, "%d threads, %zu tasks: a range of %zu",
                  threads, n, len);
        covered += len;
        if (j->begin[k] == 0)
            caller_has_first = pthread_equal(j->who[k], pthread_self());
    }
    cr_assert_eq(covered, n);
    cr_assert(caller_has_first, "the caller runs the first range itself");
    free(j);
}

Test(threadpool, every_task_runs_once_in_contiguous_even_ranges)
{
    const size_t counts[] = {0, 1, 2, 3, 5, 7, 8, 64, 1000, MAX_TASKS};
    for (int threads = 2; threads <= MAX_THREADS; threads++) {
        fpay_threadpool *p = fpay_threadpool_create(threads);
        cr_assert_not_null(p);
        cr_assert_eq(fpay_threadpool_threads(p), threads);
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
            check_split(p, threads, counts[c]);
        fpay_threadpool_free(p);
    }
}

static void count_range(void *ctx, size_t begin, size_t end)
{
    (void)begin;
    (void)end;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

/* A model's ops come back to back: 20,000 jobs in a row, each with its own
 * counter as context. Each must be complete when run returns (read right
 * after) and stay so (read again at the end: a worker that woke late and
 * re-ran a finished job, or ran it with a stale context, adds to it). */
#define JOBS 20000
Test(threadpool, back_to_back_jobs_complete_before_run_returns)
{
    fpay_threadpool *p = fpay_threadpool_create(3);
    cr_assert_not_null(p);
    atomic_int *done = calloc(JOBS, sizeof *done);
    cr_assert_not_null(done);
    for (int k = 0; k < JOBS; k++) {
        size_t n = (size_t)(k % 5); /* 0..4 tasks: fewer, as many and more than threads */
        int want = n < 3 ? (int)n : 3;
        fpay_threadpool_run(p, n, count_range, &done[k]);
        cr_assert_eq(atomic_load(&done[k]), want, "job %d: %d ranges done at return, want %d",
                     k, atomic_load(&done[k]), want);
    }
    fpay_threadpool_free(p);
    for (int k = 0; k < JOBS; k++) {
        int want = k % 5 < 3 ? k % 5 : 3;
        cr_assert_eq(atomic_load(&done[k]), want, "job %d ran %d ranges in all, want %d", k,
                     atomic_load(&done[k]), want);
    }
    free(done);
}

/* Free with idle workers asleep (past their spin) and right after a job. */
Test(threadpool, free_stops_sleeping_and_spinning_workers)
{
    for (int round = 0; round < 50; round++) {
        fpay_threadpool *p = fpay_threadpool_create(4);
        cr_assert_not_null(p);
        if (round % 2) {
            job *j = new_job();
            fpay_threadpool_run(p, 16, count_tasks, j);
            cr_assert_eq(atomic_load(&j->ranges), 4);
            free(j);
        }
        fpay_threadpool_free(p);
    }
    fpay_threadpool_free(NULL);
}
