/*
 * batcher.c - groups concurrent verify requests into one
 * fpay_service_verify_batch call.
 *
 * On an accelerator one batched embedding costs about as much as a single
 * one, so it pays to hold a request for a few milliseconds while others
 * arrive. Each connection thread queues its request and sleeps on its own
 * job's flag; one batcher thread takes the first job, waits until either
 * max_batch jobs are queued or window_ms has passed since that job arrived,
 * runs the batch outside the lock and wakes the callers. The queue is
 * bounded: when full, the caller is told at once (503) instead of waiting
 * without end.
 */
#include "server_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct batch_job {
    fpay_request req;
    fpay_capture_source cap;
    fpay_service_result *out;
    fpay_status status;
    int done;
    double queued;   /* srv_now_s() at submission */
} batch_job;

struct srv_batcher {
    pthread_mutex_t lock;
    pthread_cond_t work;      /* the batcher thread waits on it */
    pthread_cond_t finished;  /* callers wait on it (broadcast per batch) */
    pthread_t thread;
    srv_verify_batch_fn fn;
    void *ctx;
    void (*observe)(void *octx, int n);
    void *octx;
    int max_batch, max_queue;
    double window_s;
    batch_job **queue;        /* ring of max_queue pointers */
    int head, count;
    int stopping;
};

double srv_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* pthread_cond_timedwait wants CLOCK_MONOTONIC when the cond says so. */
static struct timespec deadline_at(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *batcher_main(void *arg)
{
    srv_batcher *b = arg;
    batch_job **jobs = malloc((size_t)b->max_batch * sizeof *jobs);
    fpay_request *reqs = malloc((size_t)b->max_batch * sizeof *reqs);
    fpay_capture_source *caps = malloc((size_t)b->max_batch * sizeof *caps);
    fpay_service_result *outs = malloc((size_t)b->max_batch * sizeof *outs);
    pthread_mutex_lock(&b->lock);
    for (;;) {
        while (!b->count && !b->stopping)
            pthread_cond_wait(&b->work, &b->lock);
        if (!b->count && b->stopping)
            break;
        /* Wait for more unless stopping: the window starts at the first
         * job's arrival, so no request waits more than window_ms here. */
        double close_at = b->queue[b->head]->queued + b->window_s;
        while (b->count < b->max_batch && !b->stopping) {
            struct timespec ts = deadline_at(close_at);
            if (srv_now_s() >= close_at ||
                pthread_cond_timedwait(&b->work, &b->lock, &ts) == ETIMEDOUT)
                break;
        }
        int n = b->count < b->max_batch ? b->count : b->max_batch;
        for (int i = 0; i < n; i++) {
            jobs[i] = b->queue[b->head];
            b->head = (b->head + 1) % b->max_queue;
            b->count--;
        }
        pthread_mutex_unlock(&b->lock);

        fpay_status st = FPAY_OUT_OF_MEMORY;
        if (jobs && reqs && caps && outs) {
            for (int i = 0; i < n; i++) {
                reqs[i] = jobs[i]->req;
                caps[i] = jobs[i]->cap;
                memset(&outs[i], 0, sizeof outs[i]);
            }
            st = b->fn(b->ctx, n, reqs, caps, outs);
            if (b->observe)
                b->observe(b->octx, n);
        }

        pthread_mutex_lock(&b->lock);
        for (int i = 0; i < n; i++) {
            if (st == FPAY_OUT_OF_MEMORY && !(reqs && outs)) {
                memset(jobs[i]->out, 0, sizeof *jobs[i]->out);
                jobs[i]->out->decision = FPAY_DECLINE;
                jobs[i]->out->reason = FPAY_REASON_INTERNAL_ERROR;
                jobs[i]->out->score = -2;
            } else {
                *jobs[i]->out = outs[i];
            }
            jobs[i]->status = st;
            jobs[i]->done = 1;
        }
        pthread_cond_broadcast(&b->finished);
    }
    pthread_mutex_unlock(&b->lock);
    free(jobs);
    free(reqs);
    free(caps);
    free(outs);
    return NULL;
}

srv_batcher *srv_batcher_new(srv_verify_batch_fn fn, void *ctx, int max_batch,
                             double window_ms, int max_queue,
                             void (*observe)(void *octx, int n), void *octx)
{
    if (!fn || max_batch < 1 || window_ms < 0 || max_queue < max_batch)
        return NULL;
    srv_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->queue = calloc((size_t)max_queue, sizeof *b->queue);
    pthread_condattr_t ca;
    int ok = b->queue && !pthread_condattr_init(&ca);
    if (ok) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        ok = !pthread_cond_init(&b->work, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (!ok || pthread_cond_init(&b->finished, NULL) || pthread_mutex_init(&b->lock, NULL)) {
        free(b->queue);
        free(b);
        return NULL;
    }
    b->fn = fn;
    b->ctx = ctx;
    b->observe = observe;
    b->octx = octx;
    b->max_batch = max_batch;
    b->max_queue = max_queue;
    b->window_s = window_ms / 1e3;
    if (pthread_create(&b->thread, NULL, batcher_main, b)) {
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->work);
        pthread_cond_destroy(&b->finished);
        free(b->queue);
        free(b);
        return NULL;
    }
    return b;
}

fpay_status srv_batcher_verify(srv_batcher *b, const fpay_request *req,
                               const fpay_capture_source *cap, fpay_service_result *out)
{
    batch_job job = {.req = *req, .cap = *cap, .out = out, .queued = srv_now_s()};
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
        pthread_mutex_unlock(&b->lock);
        return FPAY_INTERNAL;
    }
    if (b->count >= b->max_queue) {
        pthread_mutex_unlock(&b->lock);
        return FPAY_LIMIT_EXCEEDED;
    }
    b->queue[(b->head + b->count) % b->max_queue] = &job;
    b->count++;
    pthread_cond_signal(&b->work);
    while (!job.done)
        pthread_cond_wait(&b->finished, &b->lock);
    pthread_mutex_unlock(&b->lock);
    return job.status;
}

void srv_batcher_free(srv_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->finished);
    free(b->queue);
    free(b);
}
