/* One helper thread for bpcore's element-wise passes (the Adam update of the fused
 * step), beside the calling thread.
 *
 * Why: at two BLAS threads the matrix products run on both CPUs, but a pass over
 * every parameter ran on one, and took up to a sixth of a W2 Adam step.
 *
 * How: bp_pool_run(fn, arg, n, chunk) hands out [0, n) in chunks of `chunk` from an
 * atomic counter. The caller starts on the chunks at once; the helper, woken by a
 * condition variable, takes chunks as soon as it runs. When the caller runs out of
 * chunks it either cancels the helper's turn (not yet begun: the caller did all the
 * work, and paid only the wake-up call) or waits for the helper's last chunk. So a
 * helper that wakes late, or whose CPU is busy (OpenBLAS's workers spin for about
 * 0.1 s after each call), costs at most one chunk of waiting, never a whole pass.
 * Every entry is computed by one of the two threads exactly as by one thread alone:
 * the split changes no result.
 *
 * The helper is kept off the caller's CPU (its affinity: the process's CPUs but the
 * caller's, set again when the caller has moved). Woken from the caller's CPU, the
 * scheduler put it there, beside the caller, where it did most of the chunks while
 * the caller waited for its CPU: no faster than one thread.
 *
 * One caller at a time uses the helper; a second caller (another Python thread's
 * model) finds it busy and does its pass alone, so there are never more than two
 * threads per pass. The helper is started on first use, blocks every signal (they
 * stay with Python's threads), sleeps when idle, and is started again in a child
 * after fork (only the forking thread survives fork). If it cannot be started, every
 * pass runs on the caller alone, as everywhere but Linux.
 */
#ifndef BPCORE_POOL_H
#define BPCORE_POOL_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE    /* sched_getcpu, CPU affinity: before any system header */
#endif
#include "_loops.h"

typedef void (*bp_range_fn)(void *arg, long start, long stop);

/* bytes of one chunk: 32 KiB (8192 floats) is about 7 us of Adam here, the longest
 * the caller can wait for the helper's last chunk */
#define BP_POOL_CHUNK_BYTES 32768L

#if defined(__linux__)
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sched.h>

/* the helper's turn in the posted pass; IDLE (0, as the struct starts) until the
 * first pass, and once the caller cancels a turn the helper has not begun */
enum { BP_TURN_IDLE = 0, BP_TURN_POSTED, BP_TURN_TAKEN, BP_TURN_DONE };

static struct {
    pthread_mutex_t lock;   /* guards started, failed, gen and the helper's sleep */
    pthread_cond_t wake;
    pthread_mutex_t busy;   /* held by the one caller whose pass the helper shares */
    int started, failed, atfork;
    pthread_t helper;
    cpu_set_t cpus;         /* the CPUs the process may run on, read at start */
    int away_from;          /* the CPU the helper is kept off (-1: none yet) */
    unsigned long gen;      /* one more for every pass posted */
    bp_range_fn fn;         /* the posted pass: written before turn is POSTED */
    void *arg;
    long n, chunk;
    atomic_long next;       /* start of the next chunk not yet taken */
    atomic_int turn;        /* the helper's part in the posted pass: BP_TURN_* */
} bp_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
             PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};

/* chunks of the posted pass, taken until none is left */
static void bp_pool_work(void) {
    bp_range_fn fn = bp_pool.fn;
    void *arg = bp_pool.arg;
    long n = bp_pool.n, chunk = bp_pool.chunk;
    for (;;) {
        long start = atomic_fetch_add(&bp_pool.next, chunk);
        if (start >= n) return;
        fn(arg, start, start + chunk < n ? start + chunk : n);
    }
}

static void *bp_pool_helper(void *unused) {
    (void) unused;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&bp_pool.lock);
    unsigned long seen = bp_pool.gen;
    for (;;) {
        while (bp_pool.gen == seen) pthread_cond_wait(&bp_pool.wake, &bp_pool.lock);
        seen = bp_pool.gen;
        pthread_mutex_unlock(&bp_pool.lock);
        int posted = BP_TURN_POSTED;
        /* a pass the caller has finished (and cancelled this turn of) is skipped */
        if (atomic_compare_exchange_strong(&bp_pool.turn, &posted, BP_TURN_TAKEN)) {
            bp_pool_work();
            atomic_store(&bp_pool.turn, BP_TURN_DONE);
        }
        pthread_mutex_lock(&bp_pool.lock);
    }
    return NULL;
}

/* in a child after fork: no helper thread, and the locks as new */
static void bp_pool_after_fork(void) {
    pthread_mutex_init(&bp_pool.lock, NULL);
    pthread_cond_init(&bp_pool.wake, NULL);
    pthread_mutex_init(&bp_pool.busy, NULL);
    bp_pool.started = 0;
    bp_pool.failed = 0;
    bp_pool.away_from = -1;
    atomic_store(&bp_pool.turn, BP_TURN_IDLE);
}

/* 1 when the helper runs (starting it on first use), 0 when it cannot */
static int bp_pool_ready(void) {
    pthread_mutex_lock(&bp_pool.lock);
    if (!bp_pool.started && !bp_pool.failed) {
        pthread_attr_t attr;
        pthread_t thread;
        int ok = sched_getaffinity(0, sizeof(cpu_set_t), &bp_pool.cpus) == 0 &&
                 CPU_COUNT(&bp_pool.cpus) > 1 && pthread_attr_init(&attr) == 0;
        if (ok) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            pthread_attr_setstacksize(&attr, 1 << 16);
            ok = pthread_create(&thread, &attr, bp_pool_helper, NULL) == 0;
            bp_pool.helper = thread;
            bp_pool.away_from = -1;
            pthread_attr_destroy(&attr);
        }
        if (ok && !bp_pool.atfork)
            bp_pool.atfork = pthread_atfork(NULL, NULL, bp_pool_after_fork) == 0;
        bp_pool.started = ok;
        bp_pool.failed = !ok;
    }
    int started = bp_pool.started;
    pthread_mutex_unlock(&bp_pool.lock);
    return started;
}

/* fn(arg, start, stop) over [0, n) in chunks of `chunk` entries, on the calling
 * thread and the helper; on the caller alone when n is at most two chunks or the
 * helper is busy with another caller's pass. Returns when every chunk is done. */
static void bp_pool_run(bp_range_fn fn, void *arg, long n, long chunk) {
    if (n <= 2 * chunk || pthread_mutex_trylock(&bp_pool.busy) != 0) {
        fn(arg, 0, n);
        return;
    }
    if (!bp_pool_ready()) {
        pthread_mutex_unlock(&bp_pool.busy);
        fn(arg, 0, n);
        return;
    }
    /* The helper is kept off the caller's CPU: woken from there, the scheduler would
     * put it beside the caller, which then waits while the helper does the pass. */
    int cpu = sched_getcpu();
    if (cpu >= 0 && cpu != bp_pool.away_from && CPU_ISSET(cpu, &bp_pool.cpus)) {
        cpu_set_t others = bp_pool.cpus;
        CPU_CLR(cpu, &others);
        if (pthread_setaffinity_np(bp_pool.helper, sizeof(cpu_set_t), &others) == 0)
            bp_pool.away_from = cpu;
    }
    bp_pool.fn = fn;
    bp_pool.arg = arg;
    bp_pool.n = n;
    bp_pool.chunk = chunk;
    atomic_store(&bp_pool.next, 0);
    atomic_store(&bp_pool.turn, BP_TURN_POSTED);
    pthread_mutex_lock(&bp_pool.lock);
    bp_pool.gen++;
    pthread_cond_signal(&bp_pool.wake);
    pthread_mutex_unlock(&bp_pool.lock);
    bp_pool_work();
    int posted = BP_TURN_POSTED;
    if (!atomic_compare_exchange_strong(&bp_pool.turn, &posted, BP_TURN_IDLE)) {
        /* the helper took its turn: wait for its last chunk */
        int spins = 0;
        while (atomic_load(&bp_pool.turn) != BP_TURN_DONE) {
            if (spins < 4096) {         /* a chunk takes microseconds: spin first */
                spins++;
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            } else {                    /* the helper lost its CPU: let it have one */
                sched_yield();
            }
        }
    }
    pthread_mutex_unlock(&bp_pool.busy);
}

#else  /* elsewhere (no CPU affinity API here): every pass on the caller alone */

static void bp_pool_run(bp_range_fn fn, void *arg, long n, long chunk) {
    (void) chunk;
    fn(arg, 0, n);
}

#endif

/* The Adam pass of bp_adam (_loops_impl.h) shared with the helper. */
#define BP_ADAM_SPLIT(T, SUFFIX)                                                     \
    typedef struct {                                                                 \
        T *params; const T *grads; T *exp_avg; T *exp_avg_sq;                        \
        T step_size, beta1, beta2, eps, l2, decay, inv_root_bc2;                     \
    } bp_adam_args_##SUFFIX;                                                         \
    static void bp_adam_range_##SUFFIX(void *arg, long start, long stop) {           \
        const bp_adam_args_##SUFFIX *a = arg;                                        \
        bp_adam_##SUFFIX(stop - start, a->params + start, a->grads + start,          \
                         a->exp_avg + start, a->exp_avg_sq + start, a->step_size,    \
                         a->beta1, a->beta2, a->eps, a->l2, a->decay,                \
                         a->inv_root_bc2);                                           \
    }                                                                                \
    static void bp_adam_shared_##SUFFIX(                                             \
            long n, T *params, const T *grads, T *exp_avg, T *exp_avg_sq,            \
            T step_size, T beta1, T beta2, T eps, T l2, T decay, T inv_root_bc2) {   \
        bp_adam_args_##SUFFIX a = {params, grads, exp_avg, exp_avg_sq, step_size,    \
                                   beta1, beta2, eps, l2, decay, inv_root_bc2};      \
        bp_pool_run(bp_adam_range_##SUFFIX, &a, n,                                   \
                    BP_POOL_CHUNK_BYTES / (long) sizeof(T));                         \
    }

BP_ADAM_SPLIT(float, f32)
BP_ADAM_SPLIT(double, f64)
#undef BP_ADAM_SPLIT

#endif
