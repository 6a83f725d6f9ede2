/*
 * agenttrail.native._fastpath: the verifier's per-event parsing in C.
 *
 * Three functions, each a drop-in for a pure-Python function that stays the reference (the tests
 * hold every one of them to it, byte for byte, on valid and on mutated input):
 *
 *   decode_v1(data)          -> (Envelope, signing bytes) or None
 *       envelope_fast._decode_v1: one pass over a plain v1 envelope. None wherever the Python
 *       function raises _Unusual / IndexError / UnicodeDecodeError; the caller then takes the
 *       generic decoder, which names the exact error.
 *   canonical_plain(payload) -> bool
 *       True only when canonical.is_canonical_fast(payload) is True for certain: no whitespace,
 *       keys without escapes in strictly ascending UTF-8 order, the string escapes json.dumps
 *       writes, integers within 2**53 as written, floats equal to their repr without exponent.
 *       False means "not shown here": the caller runs the Python check, which decides.
 *   ledger_v1(header, raw_envelope, chain_index, prev_hash, entry_hash, seq_gap, partition, offset)
 *       -> bytes or None
 *       ledger.encode_ledger_from_raw for a v1 envelope; None for out-of-range integers.
 *
 * setup(envelope_type, event_types, signing_domain, envelope_header) must be called once first.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define N_FIELDS 12
#define MAX_TYPES 64
#define MAX_DEPTH 64

static PyTypeObject *envelope_type = NULL;
static PyObject *field_names[N_FIELDS];
static PyObject *type_names = NULL;      /* tuple of str */
static PyObject *domain = NULL;          /* bytes */
static PyObject *header = NULL;          /* bytes: the v1 envelope header (magic + fingerprint) */
static Py_ssize_t n_types = 0;

static const char *FIELD_NAMES[N_FIELDS] = {
    "event_id", "tenant_id", "agent_id", "session_id", "seq", "ts", "type", "payload",
    "payload_sha256", "attributes", "key_id", "signature",
};

/* ---- Avro primitives (the same acceptance as envelope_fast._varint/_long/_blob) ------------- */

typedef struct {
    const unsigned char *p;
    Py_ssize_t n;
} span;

static int
read_varint(const unsigned char *d, Py_ssize_t len, Py_ssize_t *pos, uint64_t *out)
{
    uint64_t value = 0;
    int shift = 0;
    for (;;) {
        if (*pos >= len)
            return -1;
        unsigned int b = d[(*pos)++];
        uint64_t bits = b & 0x7F;
        if (shift == 63 && bits > 1)
            return -1; /* beyond 64 bits */
        value |= bits << shift;
        if (b < 0x80) {
            *out = value;
            return 0;
        }
        shift += 7;
        if (shift >= 70)
            return -1;
    }
}

static int
read_long(const unsigned char *d, Py_ssize_t len, Py_ssize_t *pos, int64_t *out)
{
    uint64_t raw;
    if (read_varint(d, len, pos, &raw) < 0)
        return -1;
    *out = (int64_t)((raw >> 1) ^ (0 - (raw & 1)));
    return 0;
}

static int
read_blob(const unsigned char *d, Py_ssize_t len, Py_ssize_t *pos, span *out)
{
    uint64_t n;
    if (read_varint(d, len, pos, &n) < 0 || (n & 1))
        return -1;
    n >>= 1;
    if (n > (uint64_t)(len - *pos))
        return -1;
    out->p = d + *pos;
    out->n = (Py_ssize_t)n;
    *pos += (Py_ssize_t)n;
    return 0;
}

static unsigned char *
put_u32(unsigned char *w, Py_ssize_t n)
{
    uint32_t v = (uint32_t)n;
    w[0] = (unsigned char)(v >> 24);
    w[1] = (unsigned char)(v >> 16);
    w[2] = (unsigned char)(v >> 8);
    w[3] = (unsigned char)v;
    return w + 4;
}

static unsigned char *
put_u64(unsigned char *w, int64_t value)
{
    uint64_t v = (uint64_t)value;
    for (int i = 7; i >= 0; i--) {
        w[i] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
    return w + 8;
}

static unsigned char *
put_str(unsigned char *w, span s)
{
    w = put_u32(w, s.n);
    memcpy(w, s.p, (size_t)s.n);
    return w + s.n;
}

/* A UnicodeDecodeError means "unusual" (None); anything else (MemoryError) propagates. */
static PyObject *
utf8(span s, int *unusual)
{
    PyObject *text = PyUnicode_DecodeUTF8((const char *)s.p, s.n, NULL);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        *unusual = 1;
    }
    return text;
}

typedef struct {
    span key;
    span value;
} pair;

static int
compare_spans(span a, span b)
{
    Py_ssize_t n = a.n < b.n ? a.n : b.n;
    int c = n ? memcmp(a.p, b.p, (size_t)n) : 0;
    if (c)
        return c;
    return (a.n > b.n) - (a.n < b.n);
}

static int
compare_pairs(const void *x, const void *y)
{
    const pair *a = (const pair *)x, *b = (const pair *)y;
    int c = compare_spans(a->key, b->key);
    return c ? c : compare_spans(a->value, b->value);
}

/* ---- decode_v1 ------------------------------------------------------------------------------ */

static PyObject *
build_envelope(PyObject *values[N_FIELDS])
{
    PyObject *env = envelope_type->tp_alloc(envelope_type, 0);
    if (env == NULL)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        /* The slots' own descriptors: the frozen class's __setattr__ refuses assignment. */
        if (PyObject_GenericSetAttr(env, field_names[i], values[i]) < 0) {
            Py_DECREF(env);
            return NULL;
        }
    }
    return env;
}

/* The v1 envelope body at d[*pos:]: 1 with *env_out (and *msg_out, the signing bytes, when
 * want_message) set and *pos after it; 0 where envelope_fast._decode_v1 gives up; -1 on an
 * error (MemoryError). With exact_end the body must end the data (no trailing bytes). */
static int
parse_envelope(const unsigned char *d, Py_ssize_t len, Py_ssize_t *pos_io, int exact_end, int want_message,
               PyObject **env_out, PyObject **msg_out)
{
    Py_ssize_t pos = *pos_io;
    span ev, te, ag, se, payload, digest, kid, sig;
    int64_t seq, ts, count;
    if (read_blob(d, len, &pos, &ev) || read_blob(d, len, &pos, &te) || read_blob(d, len, &pos, &ag)
        || read_blob(d, len, &pos, &se) || read_long(d, len, &pos, &seq) || read_long(d, len, &pos, &ts))
        return 0;
    if (pos >= len)
        return 0;
    unsigned int kind = d[pos];
    if (kind >= 0x80 || (kind & 1) || (Py_ssize_t)(kind >> 1) >= n_types)
        return 0;
    kind >>= 1;
    pos++;
    if (read_blob(d, len, &pos, &payload) || read_blob(d, len, &pos, &digest)
        || read_long(d, len, &pos, &count))
        return 0;

    PyObject *result = NULL, *attributes = NULL, *message = NULL, *env = NULL;
    PyObject *values[N_FIELDS] = {NULL};
    pair *pairs = NULL;
    int unusual = 0;

    attributes = PyDict_New();
    if (attributes == NULL)
        goto done;
    if (count) {
        /* A block with its byte size (count < 0) is left to the generic decoder; every pair
         * takes at least two bytes, so a larger count runs out of input. */
        if (count < 0 || count > (len - pos) / 2) {
            unusual = 1;
            goto done;
        }
        pairs = PyMem_Malloc(sizeof(pair) * (size_t)count);
        if (pairs == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (int64_t i = 0; i < count; i++) {
            if (read_blob(d, len, &pos, &pairs[i].key) || read_blob(d, len, &pos, &pairs[i].value)) {
                unusual = 1;
                goto done;
            }
            PyObject *k = utf8(pairs[i].key, &unusual);
            if (k == NULL)
                goto done;
            PyObject *v = utf8(pairs[i].value, &unusual);
            if (v == NULL) {
                Py_DECREF(k);
                goto done;
            }
            int failed = PyDict_SetItem(attributes, k, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (failed)
                goto done;
        }
        if (pos >= len || d[pos] != 0 || PyDict_GET_SIZE(attributes) != count) {
            unusual = 1; /* a second block, or a key given twice */
            goto done;
        }
        pos++;
        qsort(pairs, (size_t)count, sizeof(pair), compare_pairs);
    }
    if (read_blob(d, len, &pos, &kid) || read_blob(d, len, &pos, &sig) || (exact_end && pos != len)) {
        unusual = 1;
        goto done;
    }

    span strings[5] = {ev, te, ag, se, kid};
    int slots[5] = {0, 1, 2, 3, 10};
    for (int i = 0; i < 5; i++) {
        values[slots[i]] = utf8(strings[i], &unusual);
        if (values[slots[i]] == NULL)
            goto done;
    }
    values[4] = PyLong_FromLongLong(seq);
    values[5] = PyLong_FromLongLong(ts);
    values[6] = PyTuple_GET_ITEM(type_names, kind);
    Py_INCREF(values[6]);
    values[7] = PyBytes_FromStringAndSize((const char *)payload.p, payload.n);
    values[8] = PyBytes_FromStringAndSize((const char *)digest.p, digest.n);
    values[9] = attributes;
    Py_INCREF(attributes);
    values[11] = PyBytes_FromStringAndSize((const char *)sig.p, sig.n);
    for (int i = 0; i < N_FIELDS; i++)
        if (values[i] == NULL)
            goto done;
    env = build_envelope(values);
    if (env == NULL)
        goto done;

    if (!want_message) {
        result = env;
        goto done;
    }
    /* The signing bytes (docs/signing.md), from slices of the message. */
    span type_name;
    Py_ssize_t type_len;
    type_name.p = (const unsigned char *)PyUnicode_AsUTF8AndSize(values[6], &type_len);
    if (type_name.p == NULL)
        goto done;
    type_name.n = type_len;
    Py_ssize_t size = PyBytes_GET_SIZE(domain) + 4 * 4 + ev.n + te.n + ag.n + se.n + 16 + 4 + type_name.n
                      + 4 + digest.n + 4 + 4 + kid.n;
    for (int64_t i = 0; i < count; i++)
        size += 8 + pairs[i].key.n + pairs[i].value.n;
    message = PyBytes_FromStringAndSize(NULL, size);
    if (message == NULL)
        goto done;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(message);
    memcpy(w, PyBytes_AS_STRING(domain), (size_t)PyBytes_GET_SIZE(domain));
    w += PyBytes_GET_SIZE(domain);
    w = put_str(w, ev);
    w = put_str(w, te);
    w = put_str(w, ag);
    w = put_str(w, se);
    w = put_u64(w, seq);
    w = put_u64(w, ts);
    w = put_str(w, type_name);
    w = put_str(w, digest);
    w = put_u32(w, (Py_ssize_t)count);
    for (int64_t i = 0; i < count; i++) {
        w = put_str(w, pairs[i].key);
        w = put_str(w, pairs[i].value);
    }
    w = put_str(w, kid);
    if (w != (unsigned char *)PyBytes_AS_STRING(message) + size) {
        PyErr_SetString(PyExc_SystemError, "agenttrail fast path: signing bytes size mismatch");
        goto done;
    }
    result = env;

done:
    PyMem_Free(pairs);
    for (int i = 0; i < N_FIELDS; i++)
        Py_XDECREF(values[i]);
    Py_XDECREF(attributes);
    if (result == NULL) {
        Py_XDECREF(message);
        Py_XDECREF(env);
        return unusual && !PyErr_Occurred() ? 0 : -1;
    }
    *env_out = env;
    *msg_out = message;
    *pos_io = pos;
    return 1;
}

static int
check_setup(void)
{
    if (envelope_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "agenttrail.native._fastpath.setup() was not called");
        return -1;
    }
    return 0;
}

/* 1 when ``data`` is exactly bytes and starts with ``head`` (both bytes): its buffer, its length
 * and the position after the header; 0 otherwise. */
static int
after_header(PyObject *data, PyObject *head, const unsigned char **d, Py_ssize_t *len, Py_ssize_t *pos)
{
    if (!PyBytes_CheckExact(data) || !PyBytes_CheckExact(head))
        return 0;
    *d = (const unsigned char *)PyBytes_AS_STRING(data);
    *len = PyBytes_GET_SIZE(data);
    *pos = PyBytes_GET_SIZE(head);
    return *len >= *pos && memcmp(*d, PyBytes_AS_STRING(head), (size_t)*pos) == 0;
}

static PyObject *
decode_v1(PyObject *module, PyObject *arg)
{
    if (check_setup() < 0)
        return NULL;
    const unsigned char *d;
    Py_ssize_t len, pos;
    if (!after_header(arg, header, &d, &len, &pos))
        Py_RETURN_NONE;
    PyObject *env = NULL, *message = NULL;
    int found = parse_envelope(d, len, &pos, 1, 1, &env, &message);
    if (found < 0)
        return NULL;
    if (found == 0)
        Py_RETURN_NONE;
    PyObject *result = PyTuple_Pack(2, env, message);
    Py_DECREF(env);
    Py_DECREF(message);
    return result;
}

/* ledger.decode_ledger for a v1 ledger record holding a v1 envelope body: (Envelope, chain_index,
 * prev_hash, entry_hash, seq_gap, source_partition, source_offset), or None for anything else
 * (the caller then takes fastavro, which names the exact error). */
static PyObject *
decode_ledger_v1(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "decode_ledger_v1 takes (data, ledger_header)");
        return NULL;
    }
    if (check_setup() < 0)
        return NULL;
    const unsigned char *d;
    Py_ssize_t len, pos;
    if (!after_header(args[0], args[1], &d, &len, &pos))
        Py_RETURN_NONE;
    PyObject *env = NULL, *message = NULL;
    int found = parse_envelope(d, len, &pos, 0, 0, &env, &message);
    if (found < 0)
        return NULL;
    if (found == 0)
        Py_RETURN_NONE;
    int64_t index, partition, offset;
    span prev, entry;
    int gap = -1;
    if (read_long(d, len, &pos, &index) == 0 && read_blob(d, len, &pos, &prev) == 0
        && read_blob(d, len, &pos, &entry) == 0 && pos < len && d[pos] <= 1) {
        gap = d[pos++];
    }
    if (gap < 0 || read_long(d, len, &pos, &partition) || partition < INT32_MIN || partition > INT32_MAX
        || read_long(d, len, &pos, &offset) || pos != len) {
        Py_DECREF(env);
        Py_RETURN_NONE;
    }
    /* "N" hands the reference to env over to the tuple. */
    PyObject *result = Py_BuildValue("(NLy#y#OLL)", env, (long long)index, (const char *)prev.p, prev.n,
                                     (const char *)entry.p, entry.n, gap ? Py_True : Py_False,
                                     (long long)partition, (long long)offset);
    return result;
}

/* ---- canonical_plain ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *d;
    Py_ssize_t n;
    Py_ssize_t pos;
} cursor;

/* One UTF-8 character of 2 or 3 bytes starting at c->pos (a lead byte >= 0x80); strict like
 * Python's decoder: no overlong forms, no surrogates. 4-byte forms (outside the BMP) and
 * anything invalid: 0. */
static int
utf8_char(cursor *c)
{
    const unsigned char *d = c->d;
    Py_ssize_t p = c->pos;
    unsigned char b = d[p];
    if (b >= 0xC2 && b <= 0xDF) {
        if (p + 1 >= c->n || (d[p + 1] & 0xC0) != 0x80)
            return 0;
        c->pos = p + 2;
        return 1;
    }
    if (b >= 0xE0 && b <= 0xEF) {
        if (p + 2 >= c->n || (d[p + 1] & 0xC0) != 0x80 || (d[p + 2] & 0xC0) != 0x80)
            return 0;
        if (b == 0xE0 && d[p + 1] < 0xA0)
            return 0; /* overlong */
        if (b == 0xED && d[p + 1] >= 0xA0)
            return 0; /* a surrogate */
        c->pos = p + 3;
        return 1;
    }
    return 0;
}

static int
is_lower_hex(unsigned char h)
{
    return (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f');
}

static int
hex_value(unsigned char h)
{
    return h <= '9' ? h - '0' : h - 'a' + 10;
}

/* A string as json.dumps(ensure_ascii=False) writes it; c->pos is on the opening quote.
 * With allow_escapes == 0 (object keys) any backslash is "not shown here". */
static int
canon_string(cursor *c, int allow_escapes)
{
    const unsigned char *d = c->d;
    c->pos++;
    while (c->pos < c->n) {
        unsigned char b = d[c->pos];
        if (b == '"') {
            c->pos++;
            return 1;
        }
        if (b < 0x20)
            return 0;
        if (b == '\\') {
            if (!allow_escapes || c->pos + 1 >= c->n)
                return 0;
            unsigned char e = d[c->pos + 1];
            if (e == '"' || e == '\\' || e == 'n' || e == 'r' || e == 't' || e == 'b' || e == 'f') {
                c->pos += 2;
                continue;
            }
            if (e != 'u' || c->pos + 5 >= c->n || d[c->pos + 2] != '0' || d[c->pos + 3] != '0'
                || !is_lower_hex(d[c->pos + 4]) || !is_lower_hex(d[c->pos + 5]))
                return 0;
            int v = hex_value(d[c->pos + 4]) * 16 + hex_value(d[c->pos + 5]);
            /* only control characters without a short escape are written as \u00xx */
            if (v >= 0x20 || v == '\b' || v == '\t' || v == '\n' || v == '\f' || v == '\r')
                return 0;
            c->pos += 6;
            continue;
        }
        if (b < 0x80) {
            c->pos++;
            continue;
        }
        if (!utf8_char(c))
            return 0;
    }
    return 0;
}

static int
canon_number(cursor *c)
{
    const unsigned char *d = c->d;
    Py_ssize_t start = c->pos, p = c->pos;
    int negative = 0;
    if (d[p] == '-') {
        negative = 1;
        p++;
    }
    if (p >= c->n || d[p] < '0' || d[p] > '9')
        return 0;
    Py_ssize_t int_start = p;
    if (d[p] == '0') {
        p++;
        if (p < c->n && d[p] >= '0' && d[p] <= '9')
            return 0; /* a leading zero */
    }
    else {
        while (p < c->n && d[p] >= '0' && d[p] <= '9')
            p++;
    }
    Py_ssize_t int_end = p;
    int fraction = 0;
    if (p < c->n && d[p] == '.') {
        p++;
        if (p >= c->n || d[p] < '0' || d[p] > '9')
            return 0;
        while (p < c->n && d[p] >= '0' && d[p] <= '9')
            p++;
        fraction = 1;
    }
    if (p < c->n && (d[p] == 'e' || d[p] == 'E'))
        return 0; /* exponent form: the full check */
    c->pos = p;
    if (!fraction) {
        Py_ssize_t digits = int_end - int_start;
        if (negative && digits == 1 && d[int_start] == '0')
            return 0; /* "-0" is written "0" */
        if (digits > 16)
            return 0;
        uint64_t value = 0;
        for (Py_ssize_t i = int_start; i < int_end; i++)
            value = value * 10 + (uint64_t)(d[i] - '0');
        return value <= 9007199254740991ULL; /* 2**53 - 1 */
    }
    /* A float: canonical here iff it does not end in ".0" and equals the repr of its value. */
    Py_ssize_t len = p - start;
    char token[40];
    if (len >= (Py_ssize_t)sizeof(token))
        return 0;
    if (d[p - 1] == '0' && d[p - 2] == '.')
        return 0;
    memcpy(token, d + start, (size_t)len);
    token[len] = '\0';
    char *end = NULL;
    double value = PyOS_string_to_double(token, &end, NULL);
    if (value == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (end != token + len)
        return 0;
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        PyErr_Clear();
        return 0;
    }
    int same = strcmp(text, token) == 0;
    PyMem_Free(text);
    return same;
}

static int
canon_literal(cursor *c, const char *word, Py_ssize_t len)
{
    if (c->n - c->pos < len || memcmp(c->d + c->pos, word, (size_t)len) != 0)
        return 0;
    c->pos += len;
    return 1;
}

static int canon_value(cursor *c, int depth);

/* Past the opening bracket; 1 when the container closes at once (empty). */
static int
open_container(cursor *c, unsigned char close)
{
    c->pos++;
    if (c->pos < c->n && c->d[c->pos] == close) {
        c->pos++;
        return 1;
    }
    return 0;
}

/* After a member or an element: 1 = the container closed, 2 = a comma (another follows), 0 = neither. */
static int
after_item(cursor *c, unsigned char close)
{
    if (c->pos >= c->n)
        return 0;
    if (c->d[c->pos] == close) {
        c->pos++;
        return 1;
    }
    if (c->d[c->pos] != ',')
        return 0;
    c->pos++;
    return 2;
}

static int
canon_object(cursor *c, int depth)
{
    const unsigned char *d = c->d;
    if (open_container(c, '}'))
        return 1;
    span previous = {NULL, 0};
    for (;;) {
        if (c->pos >= c->n || d[c->pos] != '"')
            return 0;
        Py_ssize_t key_start = c->pos + 1;
        if (!canon_string(c, 0))
            return 0;
        span key = {d + key_start, c->pos - 1 - key_start};
        /* UTF-8 byte order is code point order, which is json.dumps's sort_keys order (and
         * RFC 8785's UTF-16 order inside the BMP); strictly ascending also means no duplicate. */
        if (previous.p != NULL && compare_spans(previous, key) >= 0)
            return 0;
        previous = key;
        if (c->pos >= c->n || d[c->pos] != ':')
            return 0;
        c->pos++;
        if (!canon_value(c, depth + 1))
            return 0;
        int next = after_item(c, '}');
        if (next != 2)
            return next;
    }
}

static int
canon_array(cursor *c, int depth)
{
    if (open_container(c, ']'))
        return 1;
    for (;;) {
        if (!canon_value(c, depth + 1))
            return 0;
        int next = after_item(c, ']');
        if (next != 2)
            return next;
    }
}

static int
canon_value(cursor *c, int depth)
{
    if (depth > MAX_DEPTH || c->pos >= c->n)
        return 0;
    switch (c->d[c->pos]) {
    case '{':
        return canon_object(c, depth);
    case '[':
        return canon_array(c, depth);
    case '"':
        return canon_string(c, 1);
    case 't':
        return canon_literal(c, "true", 4);
    case 'f':
        return canon_literal(c, "false", 5);
    case 'n':
        return canon_literal(c, "null", 4);
    default:
        return canon_number(c);
    }
}

static PyObject *
canonical_plain(PyObject *module, PyObject *arg)
{
    if (!PyBytes_CheckExact(arg))
        Py_RETURN_FALSE;
    cursor c = {(const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg), 0};
    if (c.n == 0)
        Py_RETURN_FALSE;
    if (canon_value(&c, 0) && c.pos == c.n)
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* ---- ledger_v1 ------------------------------------------------------------------------------ */

/* Avro long of 0 <= n < 2**62 (zigzag = 2n): its length in ``out``. */
static int
put_varint(uint64_t n, unsigned char out[10])
{
    uint64_t z = n << 1;
    int i = 0;
    while (z > 0x7F) {
        out[i++] = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    out[i++] = (unsigned char)z;
    return i;
}

/* put_varint of a Python int; -1 (nothing written) outside [0, 2**62). */
static int
varint_of(PyObject *obj, unsigned char out[10], int *len)
{
    long long n = PyLong_AsLongLong(obj);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (n < 0 || n >= (1LL << 62))
        return -1;
    *len = put_varint((uint64_t)n, out);
    return 0;
}

static PyObject *
ledger_v1(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "ledger_v1 takes 8 arguments");
        return NULL;
    }
    if (check_setup() < 0)
        return NULL;
    PyObject *head = args[0], *raw = args[1], *prev = args[3], *entry = args[4];
    if (!PyBytes_CheckExact(head) || !PyBytes_CheckExact(raw) || !PyBytes_CheckExact(prev)
        || !PyBytes_CheckExact(entry) || PyBytes_GET_SIZE(raw) < PyBytes_GET_SIZE(header))
        Py_RETURN_NONE;
    int gap = PyObject_IsTrue(args[5]);
    if (gap < 0)
        return NULL;
    unsigned char v_index[10], v_prev[10], v_entry[10], v_part[10], v_off[10];
    int n_index, n_part, n_off;
    if (varint_of(args[2], v_index, &n_index) || varint_of(args[6], v_part, &n_part)
        || varint_of(args[7], v_off, &n_off))
        Py_RETURN_NONE;
    int n_prev = put_varint((uint64_t)PyBytes_GET_SIZE(prev), v_prev);
    int n_entry = put_varint((uint64_t)PyBytes_GET_SIZE(entry), v_entry);
    Py_ssize_t body = PyBytes_GET_SIZE(raw) - PyBytes_GET_SIZE(header);
    Py_ssize_t size = PyBytes_GET_SIZE(head) + body + n_index + n_prev + PyBytes_GET_SIZE(prev) + n_entry
                      + PyBytes_GET_SIZE(entry) + 1 + n_part + n_off;
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out);
#define PUT(src, len) do { memcpy(w, (src), (size_t)(len)); w += (len); } while (0)
    PUT(PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head));
    PUT(PyBytes_AS_STRING(raw) + PyBytes_GET_SIZE(header), body);
    PUT(v_index, n_index);
    PUT(v_prev, n_prev);
    PUT(PyBytes_AS_STRING(prev), PyBytes_GET_SIZE(prev));
    PUT(v_entry, n_entry);
    PUT(PyBytes_AS_STRING(entry), PyBytes_GET_SIZE(entry));
    *w++ = gap ? 1 : 0;
    PUT(v_part, n_part);
    PUT(v_off, n_off);
#undef PUT
    return out;
}

/* ---- setup ---------------------------------------------------------------------------------- */

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *cls, *types, *dom, *head;
    if (!PyArg_ParseTuple(args, "O!O!SS", &PyType_Type, &cls, &PyTuple_Type, &types, &dom, &head))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    if (n == 0 || n > MAX_TYPES) {
        PyErr_SetString(PyExc_ValueError, "event_types must hold 1-64 names");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(types, i))) {
            PyErr_SetString(PyExc_TypeError, "event_types must be str");
            return NULL;
        }
    }
    for (int i = 0; i < N_FIELDS; i++) {
        if (field_names[i] == NULL) {
            field_names[i] = PyUnicode_InternFromString(FIELD_NAMES[i]);
            if (field_names[i] == NULL)
                return NULL;
        }
    }
    Py_INCREF(cls);
    Py_XSETREF(envelope_type, (PyTypeObject *)cls);
    Py_INCREF(types);
    Py_XSETREF(type_names, types);
    Py_INCREF(dom);
    Py_XSETREF(domain, dom);
    Py_INCREF(head);
    Py_XSETREF(header, head);
    n_types = n;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(envelope_type, event_types, signing_domain, envelope_header): once, before the rest."},
    {"decode_v1", decode_v1, METH_O, "(Envelope, signing bytes) of a plain v1 envelope, or None."},
    {"canonical_plain", canonical_plain, METH_O,
     "True when the payload is RFC 8785 canonical for certain; False: not shown here."},
    {"decode_ledger_v1", (PyCFunction)(void (*)(void))decode_ledger_v1, METH_FASTCALL,
     "decode_ledger_v1(data, ledger_header): the fields of a plain v1 ledger record, or None."},
    {"ledger_v1", (PyCFunction)(void (*)(void))ledger_v1, METH_FASTCALL,
     "ledger_v1(header, raw_envelope, chain_index, prev_hash, entry_hash, seq_gap, partition, offset)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The verifier's per-event parsing in C (see the .c file).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    return PyModule_Create(&module_def);
}
