/* Optional compiled helpers for segdoctor's hot loops.
 *
 * png_unfilter: the PNG row filters (None, Sub, Up, Average, Paeth; PNG 1.2 section 9) undone from the
 * inflated image data into a caller's buffer. segdoctor.io.pngfast inflates the IDAT stream with
 * libdeflate (through imagecodecs) and calls this; the pair is about twice as fast as libpng with zlib
 * on 512x512 RGB files. Everything else (chunk parsing, CRC, checks that the file is one segdoctor may
 * decode this way) stays in Python, where it is easy to read; a file this cannot handle falls back to
 * libpng or Pillow.
 *
 * The module is built when a C compiler is present at install time (optional = true in pyproject.toml);
 * without it segdoctor decodes with libpng, giving the same pixels, more slowly.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint8_t paeth(int a, int b, int c)
{
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    if (pa <= pb && pa <= pc)
        return (uint8_t)a;
    return (uint8_t)(pb <= pc ? b : c);
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
        Py_ssize_t first = bpp < rowbytes ? bpp : rowbytes;
        switch (ft) {
        case 0:
            memcpy(o, s, (size_t)rowbytes);
            break;
        case 1: /* Sub */
            memcpy(o, s, (size_t)first);
            for (i = bpp; i < rowbytes; i++)
                o[i] = (uint8_t)(s[i] + o[i - bpp]);
            break;
        case 2: /* Up */
            if (prev == NULL)
                memcpy(o, s, (size_t)rowbytes);
            else
                for (i = 0; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + prev[i]);
            break;
        case 3: /* Average */
            if (prev == NULL) {
                memcpy(o, s, (size_t)first);
                for (i = bpp; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + (o[i - bpp] >> 1));
            } else {
                for (i = 0; i < first; i++)
                    o[i] = (uint8_t)(s[i] + (prev[i] >> 1));
                for (i = bpp; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + (((unsigned)o[i - bpp] + prev[i]) >> 1));
            }
            break;
        case 4: /* Paeth: with no row above, b = c = 0 and the predictor is a (Sub) */
            if (prev == NULL) {
                memcpy(o, s, (size_t)first);
                for (i = bpp; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + o[i - bpp]);
            } else {
                for (i = 0; i < first; i++)
                    o[i] = (uint8_t)(s[i] + prev[i]);
                for (i = bpp; i < rowbytes; i++)
                    o[i] = (uint8_t)(s[i] + paeth(o[i - bpp], prev[i], prev[i - bpp]));
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
"into the writable buffer ``out`` (``height * rowbytes`` bytes). ``bpp``: bytes per complete pixel\n"
"(at least 1). Raises ValueError on a size mismatch or a filter type outside 0-4.");

static PyObject *png_unfilter(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t height, rowbytes, bpp, bad;
    if (!PyArg_ParseTuple(args, "y*w*nnn:png_unfilter", &src, &dst, &height, &rowbytes, &bpp))
        return NULL;
    if (height < 0 || rowbytes < 1 || bpp < 1 || bpp > 8 || (height > 0 && rowbytes > PY_SSIZE_T_MAX / height - 1)
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

static PyMethodDef methods[] = {
    {"png_unfilter", png_unfilter, METH_VARARGS, png_unfilter_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "segdoctor._speedups", "Optional compiled helpers for segdoctor's hot loops.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
