/*
 * threadpool.c - see threadpool.h.
 *
 * Ops of a model come back to back (MobileFaceNet: 65 nodes in ~3 ms), so a
 * futex wake per op would cost as much as a small op. Workers therefore spin
 * briefly on the job counter before sleeping on a condition variable, and
 * the caller spins briefly before waiting for the last worker. Every state
 * change that a sleeper waits for is made under the mutex, so no wake-up is
 * lost.
 */
#include "threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* About 50-200 us of spinning depending on the cost of PAUSE. */
#define SPIN_ROUNDS 2000

struct fpay_threadpool {
    int threads;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    atomic_uint generation; /* bumped per job */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool stop;
    fpay_task_fn fn;
    void *ctx;
    size_t n_tasks;
};

typedef struct worker_arg {
    fpay_threadpool *pool;
    int index;
} worker_arg;

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void run_share(fpay_threadpool *p, int index)
{
    size_t per = p->n_tasks / (size_t)p->threads, extra = p->n_tasks % (size_t)p->threads;
    size_t i = (size_t)index;
    size_t begin = i * per + (i < extra ? i : extra);
    size_t end = begin + per + (i < extra ? 1 : 0);
    if (begin < end)
        p->fn(p->ctx, begin, end);
}

static void *worker_main(void *arg)
{
    worker_arg *w = arg;
    fpay_threadpool *p = w->pool;
    const int index = w->index;
    free(w);
    unsigned seen = 0;
    for (;;) {
        for (int s = 0; s < SPIN_ROUNDS && atomic_load(&p->generation) == seen &&
                        !atomic_load(&p->stop);
             s++)
            cpu_relax();
        if (atomic_load(&p->generation) == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->start_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = atomic_load(&p->generation);
        run_share(p, index);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

fpay_threadpool *fpay_threadpool_create(int threads)
{
    if (threads < 2)
        return NULL;
    fpay_threadpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->tids = calloc((size_t)threads, sizeof(pthread_t));
    if (!p->tids) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->generation, 0u);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    p->threads = 1;
    for (int i = 1; i < threads; i++) {
        worker_arg *w = malloc(sizeof *w);
        if (!w) {
            fpay_threadpool_free(p);
            return NULL;
        }
        w->pool = p;
        w->index = i;
        if (pthread_create(&p->tids[i], NULL, worker_main, w) != 0) {
            free(w);
            fpay_threadpool_free(p);
            return NULL;
        }
        p->threads++;
    }
    return p;
}

void fpay_threadpool_free(fpay_threadpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++)
        pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->tids);
    free(p);
}

int fpay_threadpool_threads(const fpay_threadpool *p) { return p ? p->threads : 1; }

void fpay_threadpool_run(fpay_threadpool *p, size_t n_tasks, fpay_task_fn fn, void *ctx)
{
    if (n_tasks <= 1 || p->threads < 2) {
        if (n_tasks)
            fn(ctx, 0, n_tasks);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->pending, p->threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1u);
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_share(p, 0);
    for (int s = 0; s < SPIN_ROUNDS && atomic_load(&p->pending) > 0; s++)
        cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
