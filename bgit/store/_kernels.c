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

/* Codec 3 (codecs.py): a bf16 element's bits 4..11 go to P1 (zstd later); its sign and low
 * four bits, near-uniform in weights, are packed raw: the low nibbles two per byte (element
 * k with element k + h, h = ceil(n / 2)) and the signs eight per byte (bit j of byte k is
 * element j * m + k, m = ceil(n / 8)). Bits 12..14 (the exponent's top three) are `mode` in
 * all elements but the exceptions, listed in ascending order. Strided pairings keep every
 * loop a plain pass over contiguous memory, which gcc vectorizes. */
#define EXC_BLOCK 1024

/* Elements may sit at odd addresses (a tensor's offset in its file): memcpy reads them. */
static inline uint16_t ld16(const unsigned char *p)
{
    uint16_t u;
    memcpy(&u, p, 2);
    return u;
}

static inline void st16(unsigned char *p, uint16_t u)
{
    memcpy(p, &u, 2);
}

static Py_ssize_t pack_loops(const unsigned char *restrict s, Py_ssize_t n, unsigned mode,
                             unsigned char *restrict p1, unsigned char *restrict nib,
                             unsigned char *restrict sg, unsigned char *restrict exc_idx,
                             unsigned char *restrict exc_val, Py_ssize_t cap)
{
    const Py_ssize_t h = (n + 1) / 2, m = (n + 7) / 8;
    for (Py_ssize_t k = 0; k < n - h; k++) {
        const uint16_t a = ld16(s + 2 * k), b = ld16(s + 2 * (k + h));
        p1[k] = (unsigned char)(a >> 4);
        p1[k + h] = (unsigned char)(b >> 4);
        nib[k] = (unsigned char)((a & 0xF) | ((b & 0xF) << 4));
    }
    if (n % 2) {
        const uint16_t a = ld16(s + 2 * (h - 1));
        p1[h - 1] = (unsigned char)(a >> 4);
        nib[h - 1] = (unsigned char)(a & 0xF);
    }
    memset(sg, 0, (size_t)m);
    const uint16_t expected = (uint16_t)(mode << 12);
    Py_ssize_t count = 0;
    for (int j = 0; j < 8; j++) {
        const Py_ssize_t lo = j * m, hi = lo + m < n ? lo + m : n;
        for (Py_ssize_t b = lo; b < hi; b += EXC_BLOCK) {
            const Py_ssize_t e = b + EXC_BLOCK < hi ? b + EXC_BLOCK : hi;
            uint16_t off = 0;
            for (Py_ssize_t k = b; k < e; k++) {
                const uint16_t u = ld16(s + 2 * k);
                sg[k - lo] |= (unsigned char)((u >> 15) << j);
                off |= (uint16_t)((u ^ expected) & 0x7000);
            }
            if (!off)
                continue;
            for (Py_ssize_t k = b; k < e; k++) {
                const unsigned top = (ld16(s + 2 * k) >> 12) & 7;
                if (top == mode)
                    continue;
                if (count == cap)
                    return -1;
                const uint32_t at = (uint32_t)k;
                memcpy(exc_idx + 4 * count, &at, 4);
                exc_val[count++] = (unsigned char)top;
            }
        }
    }
    return count;
}

static void release_all(Py_buffer *const *buffers, int n)
{
    for (int i = 0; i < n; i++)
        PyBuffer_Release(buffers[i]);
}

/* pack_planes(src, mode, p1, nib, sg, exc_idx, exc_val) -> the number of exceptions, or -1
 * when there are more than exc_val holds (the caller then stores the piece as codec 2). */
static PyObject *pack_planes(PyObject *self, PyObject *args)
{
    Py_buffer src, p1, nib, sg, idx, val;
    int mode;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iw*w*w*w*w*", &src, &mode, &p1, &nib, &sg, &idx, &val))
        return NULL;
    const Py_ssize_t n = src.len / 2;
    Py_ssize_t count = -2;
    if (mode >= 0 && mode <= 7 && src.len % 2 == 0 && (uint64_t)n <= UINT32_MAX && p1.len == n
        && nib.len == (n + 1) / 2 && sg.len == (n + 7) / 8 && idx.len == 4 * val.len) {
        Py_BEGIN_ALLOW_THREADS
        count = pack_loops(src.buf, n, (unsigned)mode, p1.buf, nib.buf, sg.buf, idx.buf, val.buf, val.len);
        Py_END_ALLOW_THREADS
    }
    release_all((Py_buffer *const[]){&src, &p1, &nib, &sg, &idx, &val}, 6);
    if (count == -2) {
        PyErr_SetString(PyExc_ValueError, "bad mode or buffer sizes");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* 0, or -1 when the exceptions are out of order, out of range or not exceptions. */
static int unpack_loops(const unsigned char *restrict p1, const unsigned char *restrict nib,
                        const unsigned char *restrict sg, unsigned mode, const unsigned char *exc_idx,
                        const unsigned char *exc_val, Py_ssize_t count, unsigned char *restrict d,
                        Py_ssize_t n)
{
    const Py_ssize_t h = (n + 1) / 2, m = (n + 7) / 8;
    const uint16_t top = (uint16_t)(mode << 12);
    for (Py_ssize_t k = 0; k < n - h; k++) {
        st16(d + 2 * k, (uint16_t)(top | (p1[k] << 4) | (nib[k] & 0xF)));
        st16(d + 2 * (k + h), (uint16_t)(top | (p1[k + h] << 4) | (nib[k] >> 4)));
    }
    if (n % 2)
        st16(d + 2 * (h - 1), (uint16_t)(top | (p1[h - 1] << 4) | (nib[h - 1] & 0xF)));
    for (int j = 0; j < 8; j++) {
        const Py_ssize_t lo = j * m, hi = lo + m < n ? lo + m : n;
        for (Py_ssize_t k = lo; k < hi; k++)
            st16(d + 2 * k, (uint16_t)(ld16(d + 2 * k) | (((sg[k - lo] >> j) & 1) << 15)));
    }
    uint32_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint32_t previous = at;
        memcpy(&at, exc_idx + 4 * i, 4);
        if (at >= n || (i && at <= previous) || exc_val[i] > 7 || exc_val[i] == mode)
            return -1;
        unsigned char *e = d + 2 * (Py_ssize_t)at;
        st16(e, (uint16_t)((ld16(e) & ~0x7000) | (exc_val[i] << 12)));
    }
    return 0;
}

/* unpack_planes(p1, nib, sg, mode, exc_idx, exc_val, out) -> True, or False when the
 * exceptions are malformed (the object is corrupt). */
static PyObject *unpack_planes(PyObject *self, PyObject *args)
{
    Py_buffer p1, nib, sg, idx, val, out;
    int mode;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*iy*y*w*", &p1, &nib, &sg, &mode, &idx, &val, &out))
        return NULL;
    const Py_ssize_t n = p1.len;
    int status = -2;
    if (mode >= 0 && mode <= 7 && (uint64_t)n <= UINT32_MAX && nib.len == (n + 1) / 2 && sg.len == (n + 7) / 8
        && idx.len == 4 * val.len && out.len == 2 * n) {
        Py_BEGIN_ALLOW_THREADS
        status = unpack_loops(p1.buf, nib.buf, sg.buf, (unsigned)mode, idx.buf, val.buf, val.len, out.buf, n);
        Py_END_ALLOW_THREADS
    }
    release_all((Py_buffer *const[]){&p1, &nib, &sg, &idx, &val, &out}, 6);
    if (status == -2) {
        PyErr_SetString(PyExc_ValueError, "bad mode or buffer sizes");
        return NULL;
    }
    return PyBool_FromLong(status == 0);
}

static PyMethodDef methods[] = {
    {"sum_squares", sum_squares, METH_VARARGS, "sum_squares(buffer, kind, block): float64 sum of squares (kind 0 bf16, 1 f32, 2 f64) in blocks of block elements"},
    {"split_planes", split_planes, METH_VARARGS, "split_planes(src, shift, out): codec 2's bit split into out"},
    {"merge_planes", merge_planes, METH_VARARGS, "merge_planes(p1, p2, shift, out): undo split_planes into out"},
    {"pack_planes", pack_planes, METH_VARARGS,
     "pack_planes(src, mode, p1, nib, sg, exc_idx, exc_val): codec 3's planes; the exception count or -1"},
    {"unpack_planes", unpack_planes, METH_VARARGS,
     "unpack_planes(p1, nib, sg, mode, exc_idx, exc_val, out): undo pack_planes; False if the exceptions are malformed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
