/* Optional compiled helpers for segdoctor's hot loops.
 *
 * png_unfilter: the PNG row filters (None, Sub, Up, Average, Paeth; PNG 1.2 section 9) undone from the
 * inflated image data into a caller's buffer. segdoctor.io.pngfast inflates the IDAT stream with
 * libdeflate (through imagecodecs) and calls this; the pair is 1.6-1.7x as fast as libpng with zlib on
 * 512x512 RGB files (noise or photographs). Everything else (chunk parsing, CRC, checks that the file is one segdoctor may
 * decode this way) stays in Python, where it is easy to read; a file this cannot handle falls back to
 * libpng or Pillow.
 *
 * u8_histograms, u8_gray, u8_minmax, u8_label_stats, u8_components: per-pair statistics on
 * uint8 arrays (channel histograms of a strided sample, a gray copy and its 2x2 means, the value range, a
 * mask's value/neighbour counts, its connected components). Their results are integers (or integers
 * stored as float32), so they equal the numpy code they stand in for exactly; segdoctor.speedups
 * calls them where they apply and tests/test_speedups.py compares the two on every kind of input.
 *
 * The module is built when a C compiler is present at install time (optional = true in pyproject.toml);
 * without it segdoctor decodes with libpng, giving the same pixels, more slowly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The Paeth predictor (PNG 1.2, section 6.6) without branches: photographs pick it for most rows, and its
   choice between a, b and c is too irregular for branch prediction (a branchy version measured 1.7x slower).
   This form (stb_image's) compares against one threshold, 3c - (a + b); it returns the specification's
   choice for all 2**24 (a, b, c), checked exhaustively when it was written. */
Py_LOCAL_INLINE(unsigned) paeth(int a, int b, int c)
{
    int thresh = c * 3 - (a + b);
    int lo = a < b ? a : b, hi = a < b ? b : a;
    int t0 = hi <= thresh ? lo : c;
    return (unsigned)(thresh <= lo ? hi : t0);
}

/* Sub, Average and Paeth predict each byte from the byte one pixel to the left: a chain per channel. With
   ``bpp`` a compile-time constant (the callers below pass a literal) the left pixel stays in registers
   instead of being read back from the row just written. ``prev`` is NULL on the first row (zeros above). */
Py_LOCAL_INLINE(void) left_filters(int ft, const uint8_t *s, uint8_t *o, const uint8_t *prev, Py_ssize_t rowbytes,
                                   const int bpp)
{
    unsigned a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Py_ssize_t i;
    int k;
    if (ft == 1 || (ft == 4 && prev == NULL)) { /* Sub; Paeth with zeros above predicts the left byte */
        for (i = 0; i < rowbytes; i += bpp)
            for (k = 0; k < bpp; k++) {
                a[k] = (uint8_t)(s[i + k] + a[k]);
                o[i + k] = (uint8_t)a[k];
            }
    } else if (ft == 3) { /* Average */
        for (i = 0; i < rowbytes; i += bpp)
            for (k = 0; k < bpp; k++) {
                unsigned b = prev ? prev[i + k] : 0;
                a[k] = (uint8_t)(s[i + k] + ((a[k] + b) >> 1));
                o[i + k] = (uint8_t)a[k];
            }
    } else { /* Paeth */
        for (i = 0; i < rowbytes; i += bpp)
            for (k = 0; k < bpp; k++) {
                unsigned b = prev[i + k];
                a[k] = (uint8_t)(s[i + k] + paeth((int)a[k], (int)b, (int)c[k]));
                c[k] = b;
                o[i + k] = (uint8_t)a[k];
            }
    }
}

/* Returns 0, or the 1-based number of the first row whose filter type is not 0-4. */
static Py_ssize_t unfilter(const uint8_t *src, uint8_t *out, Py_ssize_t height, Py_ssize_t rowbytes, Py_ssize_t bpp)
{
    const uint8_t *prev = NULL;
    Py_ssize_t i, y;
    for (y = 0; y < height; y++) {
        const uint8_t ft = src[0];
        const uint8_t *s = src + 1;
        uint8_t *o = out;
        switch (ft) {
        case 0:
            memcpy(o, s, (size_t)rowbytes);
            break;
        case 2: /* Up */
            if (prev == NULL)
                memcpy(o, s, (size_t)rowbytes);
            else
                for (i = 0; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + prev[i]);
            break;
        case 1:
        case 3:
        case 4:
            switch (bpp) { /* rowbytes is a whole number of pixels */
            case 1: left_filters(ft, s, o, prev, rowbytes, 1); break;
            case 2: left_filters(ft, s, o, prev, rowbytes, 2); break;
            case 3: left_filters(ft, s, o, prev, rowbytes, 3); break;
            case 4: left_filters(ft, s, o, prev, rowbytes, 4); break;
            case 6: left_filters(ft, s, o, prev, rowbytes, 6); break;
            default: left_filters(ft, s, o, prev, rowbytes, 8); break;
            }
            break;
        default:
            return y + 1;
        }
        prev = o;
        src += rowbytes + 1;
        out += rowbytes;
    }
    return 0;
}

PyDoc_STRVAR(png_unfilter_doc,
"png_unfilter(data, out, height, rowbytes, bpp)\n--\n\n"
"Undo the PNG row filters of ``data`` (``height`` rows of one filter-type byte and ``rowbytes`` bytes)\n"
"into the writable buffer ``out`` (``height * rowbytes`` bytes). ``bpp``: bytes per pixel (1, 2, 3, 4,\n"
"6 or 8: the 8 and 16-bit PNG layouts), dividing ``rowbytes``. Raises ValueError on a size mismatch\n"
"or a filter type outside 0-4.");

static PyObject *png_unfilter(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t height, rowbytes, bpp, bad;
    if (!PyArg_ParseTuple(args, "y*w*nnn:png_unfilter", &src, &dst, &height, &rowbytes, &bpp))
        return NULL;
    if (height < 0 || rowbytes < 1 || bpp < 1 || bpp > 8 || bpp == 5 || bpp == 7 || rowbytes % bpp
        || (height > 0 && rowbytes > PY_SSIZE_T_MAX / height - 1)
        || src.len != height * (rowbytes + 1) || dst.len != height * rowbytes) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        PyErr_SetString(PyExc_ValueError, "png_unfilter: buffer sizes do not match height, rowbytes and bpp");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    bad = unfilter((const uint8_t *)src.buf, (uint8_t *)dst.buf, height, rowbytes, bpp);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (bad) {
        PyErr_Format(PyExc_ValueError, "png_unfilter: row %zd has filter type outside 0-4", bad);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- uint8 statistics ------------------------------------------------------------------------------ */

static int get_u8(PyObject *obj, Py_buffer *view, int ndim_min, int ndim_max, int writable)
{
    int flags = (writable ? PyBUF_WRITABLE : 0) | PyBUF_STRIDES | PyBUF_FORMAT;
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != 1 || view->ndim < ndim_min || view->ndim > ndim_max) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "expected a uint8 array of the documented shape");
        return -1;
    }
    return 0;
}

static int get_out(PyObject *obj, Py_buffer *view, Py_ssize_t nbytes, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len != nbytes) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s: expected an output buffer of %zd bytes", what, nbytes);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(u8_histograms_doc,
"u8_histograms(a, out)\n--\n\n"
"Add the 256-bin histogram of each channel of the uint8 array ``a`` ((H, W) or (H, W, C), any strides)\n"
"to ``out`` (C-contiguous int64, C * 256 values; C = 1 for a 2-D array).");

static PyObject *u8_histograms(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *out_obj;
    Py_buffer a, out;
    if (!PyArg_ParseTuple(args, "OO:u8_histograms", &a_obj, &out_obj))
        return NULL;
    if (get_u8(a_obj, &a, 2, 3, 0) < 0)
        return NULL;
    Py_ssize_t h = a.shape[0], w = a.shape[1], ch = a.ndim == 3 ? a.shape[2] : 1;
    Py_ssize_t s0 = a.strides[0], s1 = a.strides[1], s2 = a.ndim == 3 ? a.strides[2] : 0;
    if (get_out(out_obj, &out, ch * 256 * (Py_ssize_t)sizeof(int64_t), "u8_histograms") < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    int64_t *hist = (int64_t *)out.buf;
    const char *base = (const char *)a.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t c = 0; c < ch; c++) {
        int64_t *hc = hist + 256 * c;
        for (Py_ssize_t y = 0; y < h; y++) {
            const uint8_t *p = (const uint8_t *)(base + y * s0 + c * s2);
            for (Py_ssize_t x = 0; x < w; x++)
                hc[p[x * s1]]++;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* the gray value of one pixel: its first three channels summed, or its first channel when it has fewer */
Py_LOCAL_INLINE(unsigned) gray_at(const uint8_t *p, Py_ssize_t s2, int three)
{
    return three ? (unsigned)p[0] + p[s2] + p[2 * s2] : p[0];
}

PyDoc_STRVAR(u8_gray_doc,
"u8_gray(a, out, pool2=False)\n--\n\n"
"Write the sum of the first three channels of the uint8 array ``a`` ((H, W, C), any strides), or its first\n"
"channel when C < 3, into ``out`` (C-contiguous float32, H * W values). With ``pool2``, H and W even: the\n"
"2x2 block means instead (H/2 * W/2 values), the float32 values ((g00 + g10) + g01 + g11) * 0.25 that the\n"
"numpy slicing expression gives (every term is an integer below 2**24, so each sum is exact).");

static PyObject *u8_gray(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *out_obj;
    Py_buffer a, out;
    int pool2 = 0;
    if (!PyArg_ParseTuple(args, "OO|p:u8_gray", &a_obj, &out_obj, &pool2))
        return NULL;
    if (get_u8(a_obj, &a, 3, 3, 0) < 0)
        return NULL;
    const Py_ssize_t h = a.shape[0], w = a.shape[1], ch = a.shape[2];
    const Py_ssize_t s0 = a.strides[0], s1 = a.strides[1], s2 = a.strides[2];
    if (ch < 1 || (pool2 && (h % 2 || w % 2))) {
        PyErr_SetString(PyExc_ValueError, "u8_gray: expected (H, W, C), with H and W even for pool2");
        PyBuffer_Release(&a);
        return NULL;
    }
    const Py_ssize_t oh = pool2 ? h / 2 : h, ow = pool2 ? w / 2 : w;
    if (get_out(out_obj, &out, oh * ow * (Py_ssize_t)sizeof(float), "u8_gray") < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    float *g = (float *)out.buf;
    const char *base = (const char *)a.buf;
    const int three = ch >= 3;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t y = 0; y < oh; y++) {
        float *gy = g + y * ow;
        if (!pool2) {
            const uint8_t *row = (const uint8_t *)(base + y * s0);
            for (Py_ssize_t x = 0; x < ow; x++)
                gy[x] = (float)gray_at(row + x * s1, s2, three);
            continue;
        }
        const uint8_t *r0 = (const uint8_t *)(base + 2 * y * s0), *r1 = r0 + s0;
        for (Py_ssize_t x = 0; x < ow; x++) {
            const Py_ssize_t o0 = 2 * x * s1, o1 = o0 + s1;
            float v = (float)gray_at(r0 + o0, s2, three) + (float)gray_at(r1 + o0, s2, three);
            v += (float)gray_at(r0 + o1, s2, three);
            v += (float)gray_at(r1 + o1, s2, three);
            gy[x] = v * 0.25f;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(u8_minmax_doc,
"u8_minmax(a) -> (min, max)\n--\n\n"
"The smallest and largest value of a non-empty C-contiguous uint8 array, in one pass.");

static PyObject *u8_minmax(PyObject *self, PyObject *args)
{
    PyObject *a_obj;
    Py_buffer a;
    if (!PyArg_ParseTuple(args, "O:u8_minmax", &a_obj))
        return NULL;
    if (PyObject_GetBuffer(a_obj, &a, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (a.itemsize != 1 || a.len < 1) {
        PyBuffer_Release(&a);
        PyErr_SetString(PyExc_ValueError, "u8_minmax: expected a non-empty C-contiguous uint8 array");
        return NULL;
    }
    const uint8_t *p = (const uint8_t *)a.buf;
    const Py_ssize_t n = a.len;
    uint8_t lo = 255, hi = 0;
    Py_BEGIN_ALLOW_THREADS
    /* 64 independent lanes: the compiler turns these loops into vector min/max */
    uint8_t l[64], u[64];
    Py_ssize_t i = 0, j;
    for (j = 0; j < 64; j++) {
        l[j] = 255;
        u[j] = 0;
    }
    for (; i + 64 <= n; i += 64)
        for (j = 0; j < 64; j++) {
            uint8_t v = p[i + j];
            l[j] = v < l[j] ? v : l[j];
            u[j] = v > u[j] ? v : u[j];
        }
    for (j = 0; j < 64; j++) {
        lo = l[j] < lo ? l[j] : lo;
        hi = u[j] > hi ? u[j] : hi;
    }
    for (; i < n; i++) {
        lo = p[i] < lo ? p[i] : lo;
        hi = p[i] > hi ? p[i] : hi;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    return Py_BuildValue("(ii)", (int)lo, (int)hi);
}

Py_LOCAL_INLINE(uint64_t) load8(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

PyDoc_STRVAR(u8_label_stats_doc,
"u8_label_stats(label, counts, interior, between) -> monotone\n--\n\n"
"For a C-contiguous 2-D uint8 label map of at least 3x3: add to ``counts`` the pixels of each value, to\n"
"``interior`` the inner pixels (not on the outer ring) whose four neighbours hold the same value, and to\n"
"``between`` the inner pixels strictly between their four neighbours' minimum and maximum (each a\n"
"C-contiguous int64 buffer of 256 values). Returns the number of inner pixels strictly between two\n"
"opposite neighbours (left/right or up/down).");

static PyObject *u8_label_stats(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *c_obj, *i_obj, *b_obj;
    Py_buffer a, cb, ib, bb;
    if (!PyArg_ParseTuple(args, "OOOO:u8_label_stats", &a_obj, &c_obj, &i_obj, &b_obj))
        return NULL;
    if (PyObject_GetBuffer(a_obj, &a, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (a.itemsize != 1 || a.ndim != 2 || a.shape[0] < 3 || a.shape[1] < 3) {
        PyBuffer_Release(&a);
        PyErr_SetString(PyExc_ValueError, "u8_label_stats: expected a C-contiguous 2-D uint8 map of at least 3x3");
        return NULL;
    }
    const Py_ssize_t n = 256 * (Py_ssize_t)sizeof(int64_t);
    if (get_out(c_obj, &cb, n, "u8_label_stats") < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    if (get_out(i_obj, &ib, n, "u8_label_stats") < 0) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&cb);
        return NULL;
    }
    if (get_out(b_obj, &bb, n, "u8_label_stats") < 0) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&cb);
        PyBuffer_Release(&ib);
        return NULL;
    }
    const Py_ssize_t h = a.shape[0], w = a.shape[1];
    const uint8_t *m = (const uint8_t *)a.buf;
    int64_t *counts = (int64_t *)cb.buf, *interior = (int64_t *)ib.buf, *between = (int64_t *)bb.buf;
    long long monotone = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t x, y;
    /* the outer ring: counted, never inner */
    for (x = 0; x < w; x++) {
        counts[m[x]]++;
        counts[m[(h - 1) * w + x]]++;
    }
    for (y = 1; y < h - 1; y++) {
        counts[m[y * w]]++;
        counts[m[y * w + w - 1]]++;
    }
    for (y = 1; y < h - 1; y++) {
        const uint8_t *u = m + (y - 1) * w, *c = m + y * w, *d = m + (y + 1) * w;
        /* a uniform row equal to the rows above and below: all its inner pixels are interior */
        if (memcmp(c, c + 1, (size_t)(w - 1)) == 0 && memcmp(c, u, (size_t)w) == 0 && memcmp(c, d, (size_t)w) == 0) {
            counts[c[0]] += w - 2;
            interior[c[0]] += w - 2;
            continue;
        }
        x = 1;
        while (x < w - 1) {
            /* eight pixels at once: each equal to its left and right neighbours and to the pixels above and
               below means one value with every neighbour the same (needs bytes x-1 .. x+8 of the row) */
            if (x + 9 <= w) {
                uint64_t cw = load8(c + x);
                if (cw == load8(c + x - 1) && cw == load8(c + x + 1) && cw == load8(u + x) && cw == load8(d + x)) {
                    counts[c[x]] += 8;
                    interior[c[x]] += 8;
                    x += 8;
                    continue;
                }
            }
            const int v = c[x], up = u[x], dn = d[x], lf = c[x - 1], rt = c[x + 1];
            counts[v]++;
            if (v == up && v == dn && v == lf && v == rt) {
                interior[v]++;
            } else {
                int lo = up < dn ? up : dn, hi = up < dn ? dn : up;
                if (lf < lo) lo = lf;
                if (rt < lo) lo = rt;
                if (lf > hi) hi = lf;
                if (rt > hi) hi = rt;
                if (v > lo && v < hi)
                    between[v]++;
                if ((lf < v && v < rt) || (lf > v && v > rt) || (up < v && v < dn) || (up > v && v > dn))
                    monotone++;
            }
            x++;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&a);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&bb);
    return PyLong_FromLongLong(monotone);
}

/* union-find over provisional labels; the root of a set is its smallest label */
Py_LOCAL_INLINE(int32_t) find_root(int32_t *parent, int32_t x)
{
    int32_t r = x;
    while (parent[r] != r)
        r = parent[r];
    while (parent[x] != r) { /* path compression */
        int32_t next = parent[x];
        parent[x] = r;
        x = next;
    }
    return r;
}

Py_LOCAL_INLINE(void) join(int32_t *parent, int32_t a, int32_t b)
{
    if (a == b)
        return;
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

PyDoc_STRVAR(u8_components_doc,
"u8_components(label, wanted) -> (values, sizes)\n--\n\n"
"Connected components (8-connectivity) of equal value in a C-contiguous 2-D uint8 map, for the values\n"
"whose byte in ``wanted`` (256 bytes) is non-zero. Returns two bytes objects: each component's value\n"
"(uint8) and its pixel count (int64), ordered by the raster position of each component's first pixel,\n"
"which is the numbering of scipy.ndimage.label and skimage.measure.label.");

/* provisional labels: parent links, the value of each label's first pixel, and its pixel count */
typedef struct {
    int32_t *parent;
    int64_t *count;
    uint8_t *value;
    int32_t cap;
} Labels;

static int labels_grow(Labels *t)
{
    if (t->cap == INT32_MAX)
        return -1;
    int32_t cap = t->cap == 0 ? 1024 : t->cap > INT32_MAX / 2 ? INT32_MAX : 2 * t->cap;
    int32_t *p = PyMem_Realloc(t->parent, (size_t)cap * sizeof(int32_t));
    if (p == NULL)
        return -1;
    t->parent = p;
    int64_t *c = PyMem_Realloc(t->count, (size_t)cap * sizeof(int64_t));
    if (c == NULL)
        return -1;
    t->count = c;
    uint8_t *v = PyMem_Realloc(t->value, (size_t)cap);
    if (v == NULL)
        return -1;
    t->value = v;
    t->cap = cap;
    return 0;
}

static PyObject *u8_components(PyObject *self, PyObject *args)
{
    PyObject *a_obj, *w_obj, *values = NULL, *sizes = NULL, *result = NULL;
    Py_buffer a, wb;
    if (!PyArg_ParseTuple(args, "OO:u8_components", &a_obj, &w_obj))
        return NULL;
    if (PyObject_GetBuffer(a_obj, &a, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    if (a.itemsize != 1 || a.ndim != 2) {
        PyBuffer_Release(&a);
        PyErr_SetString(PyExc_ValueError, "u8_components: expected a C-contiguous 2-D uint8 map");
        return NULL;
    }
    if (PyObject_GetBuffer(w_obj, &wb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    if (wb.len != 256) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&wb);
        PyErr_SetString(PyExc_ValueError, "u8_components: wanted must hold 256 bytes");
        return NULL;
    }
    const Py_ssize_t h = a.shape[0], w = a.shape[1];
    if (h * w > INT32_MAX - 2) {
        PyBuffer_Release(&a);
        PyBuffer_Release(&wb);
        PyErr_SetString(PyExc_ValueError, "u8_components: map too large");
        return NULL;
    }
    /* labels of the previous and the current row only: sizes are counted per provisional label as it grows */
    int32_t *rows = PyMem_Malloc((size_t)(2 * (w > 0 ? w : 1)) * sizeof(int32_t));
    Labels t = {NULL, NULL, NULL, 0};
    int failed = rows == NULL || labels_grow(&t) < 0;
    const uint8_t *m = (const uint8_t *)a.buf, *wanted = (const uint8_t *)wb.buf;
    int32_t next = 1, k = 0;
    if (!failed) {
        int32_t *prev = rows, *cur = rows + w;
        for (Py_ssize_t y = 0; y < h && !failed; y++) {
            const uint8_t *row = m + y * w, *up = row - w;
            if (w > 0 && !wanted[row[0]] && memcmp(row, row + 1, (size_t)(w - 1)) == 0) {
                memset(cur, 0, (size_t)w * sizeof(int32_t));  /* a row of one value nobody asked for */
                int32_t *swap = prev;
                prev = cur;
                cur = swap;
                continue;
            }
            for (Py_ssize_t x = 0; x < w; x++) {
                const uint8_t v = row[x];
                int32_t l = 0;
                if (!wanted[v]) {
                    cur[x] = 0;
                    continue;
                }
                /* neighbours already visited: west, north-west, north, north-east. North touches the other three,
                   so when it matches they are already in its set; west and north-west touch each other. */
                const int wm = x > 0 && row[x - 1] == v;
                if (y > 0 && up[x] == v) {
                    l = prev[x];
                } else if (y > 0 && x + 1 < w && up[x + 1] == v) {
                    l = prev[x + 1];
                    if (wm)
                        join(t.parent, l, cur[x - 1]);
                    else if (x > 0 && up[x - 1] == v)
                        join(t.parent, l, prev[x - 1]);
                } else if (wm) {
                    l = cur[x - 1];
                } else if (y > 0 && x > 0 && up[x - 1] == v) {
                    l = prev[x - 1];
                }
                if (!l) {
                    if (next >= t.cap && labels_grow(&t) < 0) {
                        failed = 1;
                        break;
                    }
                    l = next++;
                    t.parent[l] = l;
                    t.value[l] = v;
                    t.count[l] = 0;
                }
                t.count[l]++;
                cur[x] = l;
            }
            int32_t *swap = prev;
            prev = cur;
            cur = swap;
        }
    }
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    /* every set's root is its smallest label, made at the set's first pixel in raster order: numbering the
       roots in increasing order numbers the components in the raster order of their first pixels */
    for (int32_t l = 1; l < next; l++) {
        int32_t r = find_root(t.parent, l);
        t.parent[l] = r;
        if (r != l)
            t.count[r] += t.count[l];
        else
            k++;
    }
    values = PyBytes_FromStringAndSize(NULL, k);
    sizes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)k * (Py_ssize_t)sizeof(int64_t));
    if (values != NULL && sizes != NULL) {
        uint8_t *vout = (uint8_t *)PyBytes_AS_STRING(values);
        int64_t *sout = (int64_t *)PyBytes_AS_STRING(sizes);
        int32_t idx = 0;
        for (int32_t l = 1; l < next; l++)
            if (t.parent[l] == l) {
                vout[idx] = t.value[l];
                sout[idx] = t.count[l];
                idx++;
            }
        result = PyTuple_Pack(2, values, sizes);
    }
    Py_XDECREF(values);
    Py_XDECREF(sizes);
done:
    PyMem_Free(rows);
    PyMem_Free(t.parent);
    PyMem_Free(t.count);
    PyMem_Free(t.value);
    PyBuffer_Release(&a);
    PyBuffer_Release(&wb);
    return result;
}

static PyMethodDef methods[] = {
    {"png_unfilter", png_unfilter, METH_VARARGS, png_unfilter_doc},
    {"u8_histograms", u8_histograms, METH_VARARGS, u8_histograms_doc},
    {"u8_gray", u8_gray, METH_VARARGS, u8_gray_doc},
    {"u8_minmax", u8_minmax, METH_VARARGS, u8_minmax_doc},
    {"u8_label_stats", u8_label_stats, METH_VARARGS, u8_label_stats_doc},
    {"u8_components", u8_components, METH_VARARGS, u8_components_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "segdoctor._speedups", "Optional compiled helpers for segdoctor's hot loops.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
