/* The store's per-element loops in C: the norm of a tensor piece and codec 2's bit split
 * and merge. Each gives exactly the bytes / the float of its numpy form in codecs.py and
 * safetensors_split.py (tests/test_store_kernels.py compares them), in one pass over the
 * data instead of numpy's four to six, with the GIL released.
 *
 * sum_squares reproduces numpy's float64 summation order, which manifests record: blocks
 * of `block` elements (safetensors_split._NORM_BLOCK, passed in), each summed by numpy's
 * pairwise algorithm (blocks of 128 with eight accumulators, halves rounded to multiples of
 * 8; numpy/_core/src/umath/loops_utils.h.src), the block sums added in order. Squares are rounded to float64 before
 * they are added (built with -ffp-contract=off: a fused multiply-add would round once). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "the kernels read little-endian elements; bgit falls back to numpy"
#endif

#define PW_BLOCKSIZE 128

enum { KIND_BF16, KIND_F32, KIND_F64 };

static inline double square_bf16(const unsigned char *p)
{
    uint16_t u;
    uint32_t w;
    float f;
    memcpy(&u, p, 2);
    w = (uint32_t)u << 16;
    memcpy(&f, &w, 4);
    double d = f;
    return d * d;
}

static inline double square_f32(const unsigned char *p)
{
    float f;
    memcpy(&f, p, 4);
    double d = f;
    return d * d;
}

static inline double square_f64(const unsigned char *p)
{
    double d;
    memcpy(&d, p, 8);
    return d * d;
}

#define PAIRWISE(NAME, WIDTH, SQUARE)                                                   \
    static double NAME(const unsigned char *a, Py_ssize_t n)                            \
    {                                                                                   \
        if (n < 8) {                                                                    \
            double res = 0.;                                                            \
            for (Py_ssize_t i = 0; i < n; i++)                                          \
                res += SQUARE(a + i * WIDTH);                                           \
            return res;                                                                 \
        }                                                                               \
        if (n <= PW_BLOCKSIZE) {                                                        \
            double r[8], res;                                                           \
            Py_ssize_t i;                                                               \
            for (int j = 0; j < 8; j++)                                                 \
                r[j] = SQUARE(a + j * WIDTH);                                           \
            for (i = 8; i < n - (n % 8); i += 8)                                        \
                for (int j = 0; j < 8; j++)                                             \
                    r[j] += SQUARE(a + (i + j) * WIDTH);                                \
            res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));    \
            for (; i < n; i++)                                                          \
                res += SQUARE(a + i * WIDTH);                                           \
            return res;                                                                 \
        }                                                                               \
        Py_ssize_t n2 = n / 2;                                                          \
        n2 -= n2 % 8;                                                                   \
        return NAME(a, n2) + NAME(a + n2 * WIDTH, n - n2);                              \
    }

PAIRWISE(pairwise_bf16, 2, square_bf16)
PAIRWISE(pairwise_f32, 4, square_f32)
PAIRWISE(pairwise_f64, 8, square_f64)

static PyObject *sum_squares(PyObject *self, PyObject *args)
{
    Py_buffer buf;
    int kind;
    Py_ssize_t block;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*in", &buf, &kind, &block))
        return NULL;
    const Py_ssize_t width = kind == KIND_BF16 ? 2 : kind == KIND_F32 ? 4 : kind == KIND_F64 ? 8 : 0;
    if (width == 0 || block < 1 || buf.len % width) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "unknown kind, a bad block or a partial element");
        return NULL;
    }
    const Py_ssize_t n = buf.len / width;
    const unsigned char *a = buf.buf;
    double total = 0.;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i += block) {
        Py_ssize_t m = n - i < block ? n - i : block;
        const unsigned char *start = a + i * width;
        double s = kind == KIND_BF16 ? pairwise_bf16(start, m)
                 : kind == KIND_F32  ? pairwise_f32(start, m)
                                     : pairwise_f64(start, m);
        total += 0. + s; /* numpy's reduction starts from the identity */
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return PyFloat_FromDouble(total);
}

/* The loops take the shift as a constant (one copy per shift): gcc vectorizes shifts by a
 * constant, not by a variable. */
static inline void split_loop(const unsigned char *restrict s, unsigned char *restrict p1,
                              unsigned char *restrict p2, Py_ssize_t n, const int shift)
{
    const uint16_t keep = (uint16_t)(((1u << shift) - 1) | ((0xFFu & ~((1u << shift) - 1)) << 8));
    for (Py_ssize_t i = 0; i < n; i++) {
        uint16_t u;
        memcpy(&u, s + 2 * i, 2);
        const uint16_t t = u & keep;
        p1[i] = (unsigned char)(u >> shift);
        p2[i] = (unsigned char)(t | (t >> 8));
    }
}

static inline void merge_loop(const unsigned char *restrict a, const unsigned char *restrict b,
                              unsigned char *restrict d, Py_ssize_t n, const int shift)
{
    const uint16_t keep = (uint16_t)(((1u << shift) - 1) | ((0xFFu & ~((1u << shift) - 1)) << 8));
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint16_t u = (uint16_t)((uint16_t)(a[i] << shift) | ((uint16_t)(b[i] * 257u) & keep));
        memcpy(d + 2 * i, &u, 2);
    }
}

#define BY_SHIFT(CALL, shift)                                                             \
    switch (shift) {                                                                      \
    case 1: CALL(1); break; case 2: CALL(2); break; case 3: CALL(3); break;                 \
    case 4: CALL(4); break; case 5: CALL(5); break; case 6: CALL(6); break;                 \
    case 7: CALL(7); break; default: CALL(8); break;                                        \
    }

/* split_planes(src, shift, out): out[:n] = P1 bytes, out[n:] = P2 bytes of n elements. */
static PyObject *split_planes(PyObject *self, PyObject *args)
{
    Py_buffer src, out;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iw*", &src, &shift, &out))
        return NULL;
    if (shift < 1 || shift > 8 || src.len % 2 || out.len != src.len) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "bad shift or buffer sizes");
        return NULL;
    }
    const Py_ssize_t n = src.len / 2;
    unsigned char *p1 = out.buf;
    Py_BEGIN_ALLOW_THREADS
#define SPLIT(k) split_loop(src.buf, p1, p1 + n, n, k)
    BY_SHIFT(SPLIT, shift)
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* merge_planes(p1, p2, shift, out): the n elements whose split gave P1 = p1, P2 = p2. */
static PyObject *merge_planes(PyObject *self, PyObject *args)
{
    Py_buffer p1, p2, out;
    int shift;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*iw*", &p1, &p2, &shift, &out))
        return NULL;
    if (shift < 1 || shift > 8 || p1.len != p2.len || out.len != 2 * p1.len) {
        PyBuffer_Release(&p1);
        PyBuffer_Release(&p2);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "bad shift or buffer sizes");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
#define MERGE(k) merge_loop(p1.buf, p2.buf, out.buf, p1.len, k)
    BY_SHIFT(MERGE, shift)
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&p1);
    PyBuffer_Release(&p2);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"sum_squares", sum_squares, METH_VARARGS, "sum_squares(buffer, kind, block): float64 sum of squares (kind 0 bf16, 1 f32, 2 f64) in blocks of block elements"},
    {"split_planes", split_planes, METH_VARARGS, "split_planes(src, shift, out): codec 2's bit split into out"},
    {"merge_planes", merge_planes, METH_VARARGS, "merge_planes(p1, p2, shift, out): undo split_planes into out"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
