/* KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)) elementwise, in one pass over memory.
 *
 * The CPU kernel behind probgen.kl.normal.fused_normal_kl (loaded by probgen/kl/_cpu_normal.py,
 * compiled on first use with the machine's C compiler). Each element reads its four parameters
 * once and writes its KL once; the loops are plain arithmetic on bits and floats so that the
 * compiler vectorizes them (no libm call, no branch), and a chunk is recomputed by a careful
 * scalar path only where a ratio left the normal range.
 *
 * With inv = 1/sigma_q, r = sigma_p*inv, d = (sigma_p - sigma_q)*inv, t = (mu_p - mu_q)*inv:
 *
 *     KL = g + d^2/2 + t^2/2,    g = d - log r >= 0.
 *
 * log r is split as in fdlibm's log: r = 2^k * m with m in [sqrt(1/2), sqrt(2)), f = m - 1,
 * s = f/(2 + f), and
 *
 *     c = f - log1p(f) = hfsq - s*(hfsq + R(s^2)),    hfsq = f^2/2,
 *
 * (R: fdlibm's polynomial, |error| < 2^-58.45; its float version 2^-34.24) has no cancellation
 * for |f| < 0.42. Then g = (d - f) - k*ln2 + c. For k = 0 we take f = d itself, so that
 * d - f = 0 exactly and g = c: near sigma_p = sigma_q the result is accurate to a few ulp
 * relative, with no series switch. For k != 0, g > 0.05 and the sum loses at most a factor 6.
 *
 * float64 runs in double, float32 in float (sixteen lanes per AVX-512 vector: the divisions
 * would make a double computation compute-bound). Measured accuracy: docs/kl/normal.md.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
static const double LG1 = 6.666666666666735130e-01, LG2 = 3.999999999940941908e-01,
                    LG3 = 2.857142874366239149e-01, LG4 = 2.222219843214978396e-01,
                    LG5 = 1.818357216161805012e-01, LG6 = 1.531383769920937332e-01,
                    LG7 = 1.479819860511658591e-01;
static const float LN2_HI_F = 6.9313812256e-01f, LN2_LO_F = 9.0580006145e-06f;
static const float LG1_F = 6.6666662693e-01f, LG2_F = 4.0000972152e-01f,
                   LG3_F = 2.8498786688e-01f, LG4_F = 2.4279078841e-01f;

/* Elements per chunk: the unit of the scalar fix-up, small enough to stay in L1. */
#define CHUNK 2048
/* Elements per thread below which extra threads cost more than they save. */
#define MIN_PER_THREAD 65536

/* KL from r, d, t (double): valid where r is a normal number. */
static inline double kl_rdt(double r, double d, double t) {
    uint64_t bits;
    memcpy(&bits, &r, sizeof bits);
    int32_t hx = (int32_t)(bits >> 32) + (0x3ff00000 - 0x3fe6a09e);
    int32_t k = (hx >> 20) - 0x3ff;
    uint64_t mbits = ((uint64_t)(uint32_t)((hx & 0x000fffff) + 0x3fe6a09e) << 32)
                     | (bits & 0xffffffffu);
    double m;
    memcpy(&m, &mbits, sizeof m);
    double e = (double)k;
    double f = k == 0 ? d : m - 1.0;
    double s = f / (2.0 + f), z = s * s, w = z * z;
    double big_r = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6));
    double hfsq = 0.5 * f * f;
    double c = hfsq - s * (hfsq + big_r);
    double g = (((d - f) - e * LN2_HI) - e * LN2_LO) + c;
    return (g + 0.5 * d * d) + 0.5 * t * t;
}

/* One element in double with exact divisions; where r is not a normal number (under- or
 * overflow of sigma_p/sigma_q, a zero, infinite or NaN argument) log r = log sigma_p -
 * log sigma_q, which keeps the KL finite when only the ratio underflows. */
static double kl_scalar(double lp, double sp, double lq, double sq) {
    double r = sp / sq, d = (sp - sq) / sq, t = (lp - lq) / sq;
    if (r >= DBL_MIN && r <= DBL_MAX) {
        return kl_rdt(r, d, t);
    }
    return 0.5 * (r * r - 1.0) - (log(sp) - log(sq)) + 0.5 * t * t;
}

/* The vectorized loop; returns nonzero where some element needs kl_scalar. */
static int chunk_f64(const double *restrict lp, const double *restrict sp,
                     const double *restrict lq, const double *restrict sq, double *restrict out,
                     int64_t n) {
    int special = 0;
    for (int64_t i = 0; i < n; ++i) {
        double inv = 1.0 / sq[i];
        double r = sp[i] * inv, d = (sp[i] - sq[i]) * inv, t = (lp[i] - lq[i]) * inv;
        out[i] = kl_rdt(r, d, t);
        special |= !((r >= DBL_MIN) & (r <= DBL_MAX) & (inv <= DBL_MAX));
    }
    return special;
}

static int chunk_f32(const float *restrict lp, const float *restrict sp, const float *restrict lq,
                     const float *restrict sq, float *restrict out, int64_t n) {
    int special = 0;
    for (int64_t i = 0; i < n; ++i) {
        float inv = 1.0f / sq[i];
        float r = sp[i] * inv, d = (sp[i] - sq[i]) * inv, t = (lp[i] - lq[i]) * inv;
        uint32_t bits;
        memcpy(&bits, &r, sizeof bits);
        int32_t ix = (int32_t)bits + (0x3f800000 - 0x3f3504f3);
        int32_t k = (ix >> 23) - 0x7f;
        uint32_t mbits = (uint32_t)((ix & 0x007fffff) + 0x3f3504f3);
        float m;
        memcpy(&m, &mbits, sizeof m);
        float e = (float)k;
        float f = k == 0 ? d : m - 1.0f;
        float s = f / (2.0f + f), z = s * s, w = z * z;
        float big_r = z * (LG1_F + w * LG3_F) + w * (LG2_F + w * LG4_F);
        float hfsq = 0.5f * f * f;
        float c = hfsq - s * (hfsq + big_r);
        float g = (((d - f) - e * LN2_HI_F) - e * LN2_LO_F) + c;
        out[i] = (g + 0.5f * d * d) + 0.5f * t * t;
        special |= !((r >= FLT_MIN) & (r <= FLT_MAX) & (inv <= FLT_MAX));
    }
    return special;
}

/* The chunked loop of one dtype: the vectorized chunk, then the elements it flagged redone one
 * by one in double (float32 elements whose ratio leaves float's normal range are normal numbers
 * in double unless an argument is 0, infinite or NaN). */
#define RANGE(NAME, CHUNK_FN, T, TMIN, TMAX)                                                   \
    static void NAME(const T *lp, const T *sp, const T *lq, const T *sq, T *out, int64_t n) {  \
        for (int64_t start = 0; start < n; start += CHUNK) {                                   \
            int64_t len = n - start < CHUNK ? n - start : CHUNK;                               \
            const T *a = lp + start, *b = sp + start, *c = lq + start, *q = sq + start;        \
            if (CHUNK_FN(a, b, c, q, out + start, len)) {                                      \
                for (int64_t i = 0; i < len; ++i) {                                            \
                    T inv = (T)1 / q[i], r = b[i] * inv;                                       \
                    if (!(r >= TMIN && r <= TMAX && inv <= TMAX)) {                            \
                        out[start + i] = (T)kl_scalar(a[i], b[i], c[i], q[i]);                 \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

RANGE(range_f64, chunk_f64, double, DBL_MIN, DBL_MAX)
RANGE(range_f32, chunk_f32, float, FLT_MIN, FLT_MAX)

/* The gradients of the KL times `grad` (the backward pass), chunk by chunk: one loop per
 * wanted gradient, each reading its chunk of the inputs while it is still in cache, so that
 * memory sees each input read once and each gradient written once. With d = (sigma_p -
 * sigma_q)/sigma_q (so that r^2 - 1 = d(2 + d) keeps its relative accuracy near r = 1) and
 * t = (mu_p - mu_q)/sigma_q:
 *     dKL/dmu_p = t/sigma_q = -dKL/dmu_q,    dKL/dsigma_p = d(2 + d)/sigma_p,
 *     dKL/dsigma_q = -(d(2 + d) + t^2)/sigma_q.
 * A null output pointer is a gradient not wanted. */
#define GRAD_RANGE(NAME, T)                                                                    \
    static void NAME(const T *gr, const T *lp, const T *sp, const T *lq, const T *sq,          \
                     T *g_lp, T *g_sp, T *g_lq, T *g_sq, int64_t n) {                          \
        for (int64_t start = 0; start < n; start += CHUNK) {                                   \
            int64_t len = n - start < CHUNK ? n - start : CHUNK;                               \
            const T *restrict y = gr + start, *restrict a = lp + start, *restrict b = sp + start, \
                              *restrict c = lq + start, *restrict q = sq + start;              \
            T *restrict loc = g_lp ? g_lp + start : g_lq ? g_lq + start : NULL;                \
            if (loc) {                                                                         \
                for (int64_t i = 0; i < len; ++i) {                                            \
                    T t = (a[i] - c[i]) / q[i];                                                \
                    loc[i] = y[i] * t / q[i];                                                  \
                }                                                                              \
                if (g_lq) {                                                                    \
                    T *restrict other = g_lq + start;                                          \
                    for (int64_t i = 0; i < len; ++i) other[i] = -loc[i];                      \
                }                                                                              \
            }                                                                                  \
            if (g_sp) {                                                                        \
                T *restrict out = g_sp + start;                                                \
                for (int64_t i = 0; i < len; ++i) {                                            \
                    T d = (b[i] - q[i]) / q[i];                                                \
                    out[i] = y[i] * (d * (2 + d)) / b[i];                                      \
                }                                                                              \
            }                                                                                  \
            if (g_sq) {                                                                        \
                T *restrict out = g_sq + start;                                                \
                for (int64_t i = 0; i < len; ++i) {                                            \
                    T d = (b[i] - q[i]) / q[i], t = (a[i] - c[i]) / q[i];                      \
                    out[i] = -y[i] * (d * (2 + d) + t * t) / q[i];                             \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

GRAD_RANGE(grad_range_f32, float)
GRAD_RANGE(grad_range_f64, double)

enum op { FORWARD_F32, FORWARD_F64, BACKWARD_F32, BACKWARD_F64 };

/* One thread's share: inputs (forward: lp, sp, lq, sq; backward: grad, lp, sp, lq, sq),
 * outputs (forward: out; backward: g_lp, g_sp, g_lq, g_sq, any of them null). */
struct task {
    enum op op;
    const void *in[5];
    void *out[4];
    int64_t start, stop;
};

#define IN(T, k) ((const T *)t->in[k] + t->start)
#define OUT(T, k) (t->out[k] ? (T *)t->out[k] + t->start : NULL)

static void run_task(const struct task *t) {
    int64_t n = t->stop - t->start;
    switch (t->op) {
    case FORWARD_F32:
        range_f32(IN(float, 0), IN(float, 1), IN(float, 2), IN(float, 3), OUT(float, 0), n);
        break;
    case FORWARD_F64:
        range_f64(IN(double, 0), IN(double, 1), IN(double, 2), IN(double, 3), OUT(double, 0), n);
        break;
    case BACKWARD_F32:
        grad_range_f32(IN(float, 0), IN(float, 1), IN(float, 2), IN(float, 3), IN(float, 4),
                       OUT(float, 0), OUT(float, 1), OUT(float, 2), OUT(float, 3), n);
        break;
    case BACKWARD_F64:
        grad_range_f64(IN(double, 0), IN(double, 1), IN(double, 2), IN(double, 3),
                       IN(double, 4), OUT(double, 0), OUT(double, 1), OUT(double, 2),
                       OUT(double, 3), n);
        break;
    }
}

static void *thread_main(void *arg) {
    run_task((const struct task *)arg);
    return NULL;
}

#define MAX_THREADS 256

/* Splits [0, n) into up to `threads` contiguous ranges (multiples of CHUNK elements), one per
 * thread, the calling thread taking the first and any range whose thread could not start. */
static void run(struct task job, int64_t n, int threads) {
    int64_t most = n / MIN_PER_THREAD;
    if (threads > most) threads = most > 1 ? (int)most : 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    int64_t per = (n + threads - 1) / threads;
    per = (per + CHUNK - 1) / CHUNK * CHUNK;
    struct task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < threads; ++i) {
        tasks[i] = job;
        tasks[i].start = i * per < n ? i * per : n;
        tasks[i].stop = (i + 1) * per < n ? (i + 1) * per : n;
        if (i > 0) {
            started[i] = pthread_create(&ids[i], NULL, thread_main, &tasks[i]) == 0;
        }
    }
    run_task(&tasks[0]);
    for (int i = 1; i < threads; ++i) {
        if (started[i]) {
            pthread_join(ids[i], NULL);
        } else {
            run_task(&tasks[i]);
        }
    }
}

void probgen_normal_kl_f64(const double *lp, const double *sp, const double *lq,
                           const double *sq, double *out, int64_t n, int threads) {
    run((struct task){FORWARD_F64, {lp, sp, lq, sq, NULL}, {out, NULL, NULL, NULL}, 0, 0}, n,
        threads);
}

void probgen_normal_kl_f32(const float *lp, const float *sp, const float *lq, const float *sq,
                           float *out, int64_t n, int threads) {
    run((struct task){FORWARD_F32, {lp, sp, lq, sq, NULL}, {out, NULL, NULL, NULL}, 0, 0}, n,
        threads);
}

void probgen_normal_kl_grad_f64(const double *grad, const double *lp, const double *sp,
                                const double *lq, const double *sq, double *g_lp, double *g_sp,
                                double *g_lq, double *g_sq, int64_t n, int threads) {
    run((struct task){BACKWARD_F64, {grad, lp, sp, lq, sq}, {g_lp, g_sp, g_lq, g_sq}, 0, 0}, n,
        threads);
}

void probgen_normal_kl_grad_f32(const float *grad, const float *lp, const float *sp,
                                const float *lq, const float *sq, float *g_lp, float *g_sp,
                                float *g_lq, float *g_sq, int64_t n, int threads) {
    run((struct task){BACKWARD_F32, {grad, lp, sp, lq, sq}, {g_lp, g_sp, g_lq, g_sq}, 0, 0}, n,
        threads);
}
