/* One helper thread for bpcore's element-wise passes (the Adam and SGD updates of
 * the fused step), beside the calling thread.
 *
 * Why: at two BLAS threads the matrix products run on both CPUs, but a pass over
 * every parameter ran on one, and took up to a sixth of a W2 Adam step.
 *
 * How: bp_pool_run(fn, arg, n, chunk) hands out [0, n) in chunks of `chunk` from an
 * atomic counter. The caller starts on the chunks at once; the helper, woken by a
 * condition variable, takes chunks as soon as it runs. When the caller runs out of
 * chunks it either cancels the helper's turn (not yet begun: the caller did all the
 * work, and paid only the wake-up call) or waits for the helper's chunk under way
 * (spinning, then asleep on a condition variable should the helper have lost its
 * CPU). So a helper that wakes late, or whose CPU is busy (OpenBLAS's workers spin
 * for about 0.1 s after each call), costs about one chunk of waiting, not a pass.
 * Every entry is computed by one of the two threads exactly as by one thread alone:
 * the split changes no result.
 *
 * The helper is kept off the caller's CPU (its affinity: the CPUs of the thread that
 * started it but the caller's, set again when the caller has moved). Woken from the
 * caller's CPU, the scheduler put it there, beside the caller, where it did most of
 * the chunks while the caller waited for its CPU: no faster than one thread.
 *
 * One caller at a time uses the helper; a second caller (another Python thread's
 * model) finds it busy and does its pass alone, so there are never more than two
 * threads per pass. The helper is started on first use with every signal blocked
 * (they stay with Python's threads), sleeps when idle, and is started again in a
 * child after fork (only the forking thread survives fork; fork handlers hold the
 * locks across it). If it cannot be started (or the starting thread may use one
 * CPU only), every pass runs on its caller alone for the rest of the process, as
 * everywhere but glibc/musl Linux.
 */
#ifndef BPCORE_POOL_H
#define BPCORE_POOL_H

#if defined(__linux__) && !defined(__ANDROID__)
#define BP_POOL_THREADS 1
#endif
/* sched_getcpu and CPU affinity; _kernels.c, which includes this file, has defined
 * it before its first header */
#if defined(BP_POOL_THREADS) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

typedef void (*bp_range_fn)(void *arg, long start, long stop);

/* bytes of one chunk: 32 KiB (8192 floats) is about 7 us of Adam here, about the
 * longest the caller waits for the helper's chunk under way */
#define BP_POOL_CHUNK_BYTES 32768L

#if defined(BP_POOL_THREADS)
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

/* the helper's turn in the posted pass; IDLE (0, as the struct starts) until the
 * first pass, and once the caller cancels a turn the helper has not begun */
enum { BP_TURN_IDLE = 0, BP_TURN_POSTED, BP_TURN_TAKEN, BP_TURN_DONE };

static struct {
    pthread_mutex_t lock;   /* guards started, failed, gen and the helper's sleep */
    pthread_cond_t wake;    /* the helper waits on it for a pass */
    pthread_cond_t done;    /* a caller done spinning waits on it for the helper */
    pthread_mutex_t busy;   /* held by the one caller whose pass the helper shares */
    int started, failed, atfork;
    pthread_t helper;
    cpu_set_t cpus;         /* the CPUs of the thread that started the helper */
    int away_from;          /* the CPU the helper is kept off (-1: none yet) */
    unsigned long gen;      /* one more for every pass posted */
    bp_range_fn fn;         /* the posted pass: written before turn is POSTED */
    void *arg;
    long n, chunk;
    atomic_long next;       /* start of the next chunk not yet taken */
    atomic_int turn;        /* the helper's part in the posted pass: BP_TURN_* */
    atomic_long helper_chunks;  /* chunks the helper has done (for tests) */
} bp_pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
             .done = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER};

/* chunks of the posted pass, taken until none is left; how many were taken */
static long bp_pool_work(void) {
    bp_range_fn fn = bp_pool.fn;
    void *arg = bp_pool.arg;
    long n = bp_pool.n, chunk = bp_pool.chunk, taken = 0;
    for (;; taken++) {
        long start = atomic_fetch_add(&bp_pool.next, chunk);
        if (start >= n) return taken;
        fn(arg, start, start + chunk < n ? start + chunk : n);
    }
}

/* the helper: arg is the pass count when it was started (so the pass posted right
 * after is not missed); it sleeps until a pass is posted */
static void *bp_pool_helper(void *arg) {
    unsigned long seen = (unsigned long) (uintptr_t) arg;
    pthread_mutex_lock(&bp_pool.lock);
    for (;;) {
        while (bp_pool.gen == seen) pthread_cond_wait(&bp_pool.wake, &bp_pool.lock);
        seen = bp_pool.gen;
        pthread_mutex_unlock(&bp_pool.lock);
        int posted = BP_TURN_POSTED;
        /* a pass the caller has finished (and cancelled this turn of) is skipped */
        if (atomic_compare_exchange_strong(&bp_pool.turn, &posted, BP_TURN_TAKEN)) {
            atomic_fetch_add(&bp_pool.helper_chunks, bp_pool_work());
            pthread_mutex_lock(&bp_pool.lock);
            atomic_store(&bp_pool.turn, BP_TURN_DONE);
            pthread_cond_signal(&bp_pool.done);
        } else {
            pthread_mutex_lock(&bp_pool.lock);
        }
    }
    return NULL;
}

/* fork: the forking thread holds both locks across it (no pass is under way then,
 * and none of the lock's users is inside it), so the child gets them unlocked and
 * consistent; the child has no helper thread and starts a new one when needed */
static void bp_pool_before_fork(void) {
    pthread_mutex_lock(&bp_pool.busy);
    pthread_mutex_lock(&bp_pool.lock);
}

static void bp_pool_after_fork_parent(void) {
    pthread_mutex_unlock(&bp_pool.lock);
    pthread_mutex_unlock(&bp_pool.busy);
}

static void bp_pool_after_fork_child(void) {
    /* the parent's helper may have been waiting on these: not in the child */
    pthread_cond_init(&bp_pool.wake, NULL);
    pthread_cond_init(&bp_pool.done, NULL);
    bp_pool.started = 0;
    bp_pool.failed = 0;
    atomic_store(&bp_pool.turn, BP_TURN_IDLE);
    pthread_mutex_unlock(&bp_pool.lock);
    pthread_mutex_unlock(&bp_pool.busy);
}

/* 1 when the helper runs (starting it on first use), 0 when it cannot: it needs the
 * fork handlers, a thread, and a second CPU for the starting thread. A failure is
 * final for the process (every pass then runs on its caller). */
static int bp_pool_ready(void) {
    pthread_mutex_lock(&bp_pool.lock);
    if (!bp_pool.started && !bp_pool.failed) {
        if (!bp_pool.atfork)
            bp_pool.atfork = pthread_atfork(bp_pool_before_fork, bp_pool_after_fork_parent,
                                            bp_pool_after_fork_child) == 0;
        int ok = bp_pool.atfork &&
                 sched_getaffinity(0, sizeof(cpu_set_t), &bp_pool.cpus) == 0 &&
                 CPU_COUNT(&bp_pool.cpus) > 1;
        pthread_attr_t attr;
        if (ok && pthread_attr_init(&attr) == 0) {
            pthread_t thread;
            sigset_t all, old;
            /* the helper starts with every signal blocked: they stay with Python's
             * threads */
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            ok = pthread_create(&thread, &attr, bp_pool_helper,
                                (void *) (uintptr_t) bp_pool.gen) == 0;
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            pthread_attr_destroy(&attr);
            if (ok) {
                bp_pool.helper = thread;
                bp_pool.away_from = -1;
            }
        } else {
            ok = 0;
        }
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
        /* the helper took its turn: wait for its chunk under way, spinning (a chunk
         * takes microseconds), then asleep (the helper lost its CPU) */
        for (int spins = 0; spins < 4096; spins++) {
            if (atomic_load(&bp_pool.turn) == BP_TURN_DONE) break;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
            __builtin_ia32_pause();
#endif
        }
        if (atomic_load(&bp_pool.turn) != BP_TURN_DONE) {
            pthread_mutex_lock(&bp_pool.lock);
            while (atomic_load(&bp_pool.turn) != BP_TURN_DONE)
                pthread_cond_wait(&bp_pool.done, &bp_pool.lock);
            pthread_mutex_unlock(&bp_pool.lock);
        }
    }
    pthread_mutex_unlock(&bp_pool.busy);
}

/* chunks the helper has done in this process (0 where there is none) */
static long bp_pool_helper_chunks(void) {
    return atomic_load(&bp_pool.helper_chunks);
}

/* 1 while the helper is on its turn of a pass (for tests: never once the pass's
 * caller has returned, unless another caller's pass has begun since) */
static int bp_pool_helper_on_turn(void) {
    return atomic_load(&bp_pool.turn) == BP_TURN_TAKEN;
}

#else  /* elsewhere (no CPU affinity API used here): every pass on its caller */

static void bp_pool_run(bp_range_fn fn, void *arg, long n, long chunk) {
    (void) chunk;
    fn(arg, 0, n);
}

static long bp_pool_helper_chunks(void) {
    return 0;
}

static int bp_pool_helper_on_turn(void) {
    return 0;
}

#endif

/* The Adam pass of bp_adam (_elementwise_impl.h) shared with the helper. */
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

/* The SGD pass of bp_sgd (_elementwise_impl.h) shared with the helper (velocity may
 * be NULL when momentum is 0, as there). */
#define BP_SGD_SPLIT(T, SUFFIX)                                                      \
    typedef struct {                                                                 \
        T *params; const T *grads; T *velocity;                                      \
        T lr, momentum, weight_decay; int nesterov;                                  \
    } bp_sgd_args_##SUFFIX;                                                          \
    static void bp_sgd_range_##SUFFIX(void *arg, long start, long stop) {            \
        const bp_sgd_args_##SUFFIX *a = arg;                                         \
        bp_sgd_##SUFFIX(stop - start, a->params + start, a->grads + start,           \
                        a->velocity ? a->velocity + start : a->velocity, a->lr,      \
                        a->momentum, a->weight_decay, a->nesterov);                  \
    }                                                                                \
    static void bp_sgd_shared_##SUFFIX(                                              \
            long n, T *params, const T *grads, T *velocity, T lr, T momentum,        \
            T weight_decay, int nesterov) {                                          \
        bp_sgd_args_##SUFFIX a = {params, grads, velocity, lr, momentum,             \
                                  weight_decay, nesterov};                           \
        bp_pool_run(bp_sgd_range_##SUFFIX, &a, n,                                    \
                    BP_POOL_CHUNK_BYTES / (long) sizeof(T));                         \
    }

BP_SGD_SPLIT(float, f32)
BP_SGD_SPLIT(double, f64)
#undef BP_SGD_SPLIT

#endif
