/*
 * tflite_import.c - TFLite flatbuffer (schema v3) to facepay graph.
 *
 * The file is untrusted: every offset, count and index is checked (the
 * reader in flatbuf.c checks the flatbuffer structure; this file checks what
 * the values mean). Loops run over counts the reader has already bounded by
 * the file size, and nothing recurses. Shapes are copied as declared and not
 * checked between ops; shape inference (shape_infer.c) does that.
 *
 * docs/model-format.md describes what is accepted and rejected.
 */
#include "tflite_import.h"

#include "flatbuf.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- schema (v3) */

/* Field indices, in schema.fbs declaration order. */
enum { MODEL_VERSION = 0, MODEL_OPCODES = 1, MODEL_SUBGRAPHS = 2,
       MODEL_DESCRIPTION = 3, MODEL_BUFFERS = 4 };
enum { OPC_DEPRECATED_CODE = 0, OPC_CUSTOM_CODE = 1, OPC_VERSION = 2,
       OPC_BUILTIN_CODE = 3 };
enum { SG_TENSORS = 0, SG_INPUTS = 1, SG_OUTPUTS = 2, SG_OPERATORS = 3,
       SG_NAME = 4 };
enum { TEN_SHAPE = 0, TEN_TYPE = 1, TEN_BUFFER = 2, TEN_NAME = 3,
       TEN_QUANT = 4, TEN_IS_VARIABLE = 5, TEN_SPARSITY = 6 };
enum { QNT_MIN = 0, QNT_MAX = 1, QNT_SCALE = 2, QNT_ZERO_POINT = 3 };
enum { OPR_OPCODE_INDEX = 0, OPR_INPUTS = 1, OPR_OUTPUTS = 2,
       OPR_OPTIONS_TYPE = 3, OPR_OPTIONS = 4, OPR_CUSTOM_OPTIONS = 5 };
enum { BUF_DATA = 0, BUF_OFFSET = 1, BUF_SIZE = 2 };

/* BuiltinOperator values this importer maps, and CUSTOM for the message. */
enum {
    TFL_ADD = 0, TFL_AVERAGE_POOL_2D = 1, TFL_CONCATENATION = 2,
    TFL_CONV_2D = 3, TFL_DEPTHWISE_CONV_2D = 4, TFL_DEQUANTIZE = 6,
    TFL_FULLY_CONNECTED = 9, TFL_L2_NORMALIZATION = 11, TFL_MAX_POOL_2D = 17,
    TFL_MUL = 18, TFL_RELU = 19, TFL_RELU6 = 21, TFL_RESHAPE = 22,
    TFL_SOFTMAX = 25, TFL_CUSTOM = 32, TFL_SUB = 41, TFL_DIV = 42,
    TFL_STRIDED_SLICE = 45, TFL_EXP = 47, TFL_CAST = 53, TFL_PRELU = 54,
    TFL_LESS = 58, TFL_NEG = 59, TFL_GREATER_EQUAL = 62, TFL_SUM = 74,
    TFL_REDUCE_MAX = 82, TFL_LEAKY_RELU = 98, TFL_ABS = 101,
};

/* Names for messages: BuiltinOperator 0..126 in schema order. */
static const char *const k_builtin_names[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR",
    "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM",
    "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
    "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM",
    "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER",
    "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
    "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE",
    "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX",
    "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
    "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL",
    "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV",
    "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG",
    "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT",
    "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT",
    "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV",
    "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE",
    "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N",
    "GATHER_ND", "COS", "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE",
    "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF",
    "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND",
    "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL",
};

static const char *builtin_name(int32_t code)
{
    if (code >= 0 &&
        code < (int32_t)(sizeof k_builtin_names / sizeof k_builtin_names[0]))
        return k_builtin_names[code];
    return "UNKNOWN";
}

/* BuiltinOptions union values (checked against the bundled models where
 * they occur, and against schema_generated.h for the rest). */
enum {
    OPT_NONE = 0, OPT_CONV2D = 1, OPT_DEPTHWISE = 2, OPT_POOL2D = 5,
    OPT_FULLY_CONNECTED = 8, OPT_SOFTMAX = 9, OPT_CONCATENATION = 10,
    OPT_ADD = 11, OPT_L2NORM = 12, OPT_RESHAPE = 17, OPT_MUL = 21,
    OPT_REDUCER = 27, OPT_SUB = 28, OPT_DIV = 29, OPT_STRIDED_SLICE = 32,
    OPT_EXP = 33, OPT_CAST = 37, OPT_DEQUANTIZE = 38, OPT_LESS = 41,
    OPT_NEG = 42, OPT_GREATER_EQUAL = 45, OPT_LEAKY_RELU = 75, OPT_ABS = 78,
};

/* What each supported builtin becomes. opt_type is the one union member
 * accepted besides NONE (0 = only NONE); optional_in is the input index that
 * may be -1 or missing (the bias), else -1. */
typedef struct op_desc {
    int32_t builtin;
    fpay_op op;
    uint8_t opt_type;
    int8_t min_in, max_in;
    int8_t optional_in;
} op_desc;

#define OPD(tfl, op, opt, lo, hi, bias)                                       \
    {TFL_##tfl, FPAY_OP_##op, opt, lo, hi, bias}
static const op_desc k_ops[] = {
    OPD(ADD, ADD, OPT_ADD, 2, 2, -1),
    OPD(AVERAGE_POOL_2D, AVERAGE_POOL_2D, OPT_POOL2D, 1, 1, -1),
    OPD(CONCATENATION, CONCATENATION, OPT_CONCATENATION, 1, 127, -1),
    OPD(CONV_2D, CONV_2D, OPT_CONV2D, 2, 3, 2),
    OPD(DEPTHWISE_CONV_2D, DEPTHWISE_CONV_2D, OPT_DEPTHWISE, 2, 3, 2),
    OPD(DEQUANTIZE, DEQUANTIZE, OPT_DEQUANTIZE, 1, 1, -1),
    OPD(FULLY_CONNECTED, FULLY_CONNECTED, OPT_FULLY_CONNECTED, 2, 3, 2),
    OPD(L2_NORMALIZATION, L2_NORMALIZE, OPT_L2NORM, 1, 1, -1),
    OPD(MAX_POOL_2D, MAX_POOL_2D, OPT_POOL2D, 1, 1, -1),
    OPD(MUL, MUL, OPT_MUL, 2, 2, -1),
    OPD(RELU, RELU, OPT_NONE, 1, 1, -1),
    OPD(RELU6, RELU6, OPT_NONE, 1, 1, -1),
    OPD(RESHAPE, RESHAPE, OPT_RESHAPE, 1, 2, -1),
    OPD(SOFTMAX, SOFTMAX, OPT_SOFTMAX, 1, 1, -1),
    OPD(SUB, SUB, OPT_SUB, 2, 2, -1),
    OPD(DIV, DIV, OPT_DIV, 2, 2, -1),
    OPD(STRIDED_SLICE, STRIDED_SLICE, OPT_STRIDED_SLICE, 4, 4, -1),
    OPD(EXP, EXP, OPT_EXP, 1, 1, -1),
    OPD(CAST, CAST, OPT_CAST, 1, 1, -1),
    OPD(PRELU, PRELU, OPT_NONE, 2, 2, -1),
    OPD(LESS, LESS, OPT_LESS, 2, 2, -1),
    OPD(NEG, NEG, OPT_NEG, 1, 1, -1),
    OPD(GREATER_EQUAL, GREATER_EQUAL, OPT_GREATER_EQUAL, 2, 2, -1),
    OPD(SUM, SUM, OPT_REDUCER, 2, 2, -1),
    OPD(REDUCE_MAX, REDUCE_MAX, OPT_REDUCER, 2, 2, -1),
    OPD(LEAKY_RELU, LEAKY_RELU, OPT_LEAKY_RELU, 1, 1, -1),
    OPD(ABS, ABS, OPT_ABS, 1, 1, -1),
};
#undef OPD

static const op_desc *find_op(int32_t builtin)
{
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (k_ops[i].builtin == builtin)
            return &k_ops[i];
    return NULL;
}

/* TensorType -> fpay_dtype; false for types the engine has no kernels for. */
static bool map_dtype(int8_t type, fpay_dtype *out)
{
    switch (type) {
    case 0: *out = FPAY_DT_F32; return true;
    case 1: *out = FPAY_DT_F16; return true;
    case 2: *out = FPAY_DT_I32; return true;
    case 3: *out = FPAY_DT_U8; return true;
    case 4: *out = FPAY_DT_I64; return true;
    case 6: *out = FPAY_DT_BOOL; return true;
    case 9: *out = FPAY_DT_I8; return true;
    default: return false;
    }
}

static const char *tensor_type_name(int8_t type)
{
    static const char *const names[] = {
        "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL",
        "INT16", "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64"};
    return type >= 0 && (size_t)type < sizeof names / sizeof names[0]
               ? names[type] : "UNKNOWN";
}

/* ------------------------------------------------------------ context */

/* One Buffer: where its bytes are in the file, and the graph-owned copy
 * once a tensor has used it (a buffer shared by tensors is copied once). */
typedef struct buf_ref {
    size_t pos, len;
    const void *copy;
    bool copied;
} buf_ref;

typedef struct imp {
    fpay_fb fb;
    fpay_graph *g;
    char *err;
    size_t err_len;
    char where[128];         /* what is being read: prefix of every message */
    fpay_fb_vec opcode_vec;  /* Model.operator_codes */
    int32_t *codes;          /* builtin code per operator code */
    uint32_t n_codes;
    buf_ref *bufs;
    uint32_t n_bufs;
    uint32_t n_tensors;
    uint8_t *written;        /* per tensor: has a value before the next op */
    uint64_t copy_budget;    /* bytes still allowed to be copied out */
} imp;

__attribute__((format(printf, 2, 3))) static void where(imp *c,
                                                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->where, sizeof c->where, fmt, ap);
    va_end(ap);
}

/* One line into err: "<where>: <what>". Returns st. */
__attribute__((format(printf, 3, 4))) static fpay_status
fail(imp *c, fpay_status st, const char *fmt, ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (c->where[0])
        fpay_set_err(c->err, c->err_len, "%s: %s", c->where, what);
    else
        fpay_set_err(c->err, c->err_len, "%s", what);
    return st;
}

/* A structural read failed: the reader's message names the byte. */
#define FB(c, call, field)                                                    \
    do {                                                                      \
        if (!(call))                                                          \
            return fail((c), FPAY_MODEL_MALFORMED, "%s: %s", (field),         \
                        (c)->fb.msg);                                         \
    } while (0)

#define TRY(expr)                                                             \
    do {                                                                      \
        fpay_status st_ = (expr);                                             \
        if (st_ != FPAY_OK)                                                   \
            return st_;                                                       \
    } while (0)

static fpay_status oom(imp *c) { return fail(c, FPAY_OUT_OF_MEMORY, "out of memory"); }

/* Counts bytes copied out of the file against its size. Names and constant
 * data are disjoint ranges of a well-formed file, so together they cannot
 * exceed it; the budget stops a small file from making the importer copy
 * the same bytes many times over (many tensors naming one huge string,
 * buffers overlapping each other). */
static fpay_status spend(imp *c, size_t len)
{
    if (len > c->copy_budget)
        return fail(c, FPAY_MODEL_MALFORMED, "names and buffers hold more "
                    "bytes than the file (overlapping data)");
    c->copy_budget -= len;
    return FPAY_OK;
}

static void fmt_dims(char *buf, size_t n, int rank, const int64_t *dims)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%lld", i ? "," : "[",
                         (long long)dims[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
    if (used < n)
        snprintf(buf + used, n - used, "%s", rank ? "]" : "[]");
}

static const char *tname(const imp *c, int t) { return c->g->tensors[t].name; }

/* ------------------------------------------------- operator codes, buffers */

static fpay_status read_opcodes(imp *c, const fpay_fb_vec *v)
{
    c->n_codes = v->len;
    c->codes = calloc((size_t)v->len + 1, sizeof *c->codes);
    if (!c->codes)
        return oom(c);
    for (uint32_t i = 0; i < v->len; i++) {
        fpay_fb_table t;
        int8_t dep;
        int32_t code, version;
        const char *custom;
        uint32_t custom_len;
        bool has_custom;
        where(c, "operator code %u", i);
        FB(c, fpay_fb_vec_table(&c->fb, v, i, &t), "table");
        FB(c, fpay_fb_i8(&c->fb, &t, OPC_DEPRECATED_CODE, 0, &dep),
           "deprecated_builtin_code");
        FB(c, fpay_fb_i32(&c->fb, &t, OPC_BUILTIN_CODE, 0, &code),
           "builtin_code");
        FB(c, fpay_fb_i32(&c->fb, &t, OPC_VERSION, 1, &version), "version");
        FB(c, fpay_fb_str_field(&c->fb, &t, OPC_CUSTOM_CODE, &custom,
                                &custom_len, &has_custom), "custom_code");
        /* Writers before builtin_code existed fill only the int8 field;
         * newer ones set the int8 to PLACEHOLDER_FOR_GREATER_OP_CODES (127)
         * for codes above 127. The larger of the two is the real code. */
        if (dep > code)
            code = dep;
        if (code < 0)
            return fail(c, FPAY_MODEL_MALFORMED, "builtin code %d is negative",
                        code);
        c->codes[i] = code;
    }
    return FPAY_OK;
}

/* Checks every Buffer up front (so a broken one is reported even when no
 * tensor uses it) and records where its bytes are. */
static fpay_status read_buffers(imp *c, const fpay_fb_vec *v)
{
    c->n_bufs = v->len;
    c->bufs = calloc((size_t)v->len + 1, sizeof *c->bufs);
    if (!c->bufs)
        return oom(c);
    for (uint32_t i = 0; i < v->len; i++) {
        fpay_fb_table t;
        fpay_fb_vec data;
        bool has_data;
        uint64_t off, size;
        where(c, "buffer %u", i);
        FB(c, fpay_fb_vec_table(&c->fb, v, i, &t), "table");
        FB(c, fpay_fb_vec_field(&c->fb, &t, BUF_DATA, 1, &data, &has_data),
           "data");
        FB(c, fpay_fb_u64(&c->fb, &t, BUF_OFFSET, 0, &off), "offset");
        FB(c, fpay_fb_u64(&c->fb, &t, BUF_SIZE, 0, &size), "size");
        /* Models over 2 GB keep their data after the flatbuffer and give
         * its place as (offset, size) from the file start. Writers use
         * offset 1 as a placeholder meaning "none". */
        if (off > 1) {
            if (has_data && data.len > 0)
                return fail(c, FPAY_MODEL_MALFORMED,
                            "has both inline data and an offset");
            if (off > c->fb.size || size > c->fb.size - off)
                return fail(c, FPAY_MODEL_MALFORMED,
                            "%llu bytes at offset %llu lie outside the "
                            "%zu-byte file", (unsigned long long)size,
                            (unsigned long long)off, c->fb.size);
            c->bufs[i].pos = (size_t)off;
            c->bufs[i].len = (size_t)size;
        } else if (size > 0) {
            return fail(c, FPAY_MODEL_MALFORMED,
                        "size %llu given without an offset",
                        (unsigned long long)size);
        } else {
            c->bufs[i].pos = data.pos;
            c->bufs[i].len = has_data ? data.len : 0;
        }
    }
    return FPAY_OK;
}

/* ------------------------------------------------------------- tensors */

static fpay_status read_quantization(imp *c, const fpay_fb_table *tt,
                                     fpay_dtype dt)
{
    fpay_fb_table q;
    fpay_fb_vec v;
    bool has_q, has_v, quantized = false;
    FB(c, fpay_fb_table_field(&c->fb, tt, TEN_QUANT, &q, &has_q),
       "quantization");
    if (!has_q)
        return FPAY_OK;
    /* Only the scale decides; min/max/zero_point are bounds-checked too, as
     * the importer promises to have checked every offset it was handed. */
    static const struct { int field; uint32_t elem; const char *what; } k[] = {
        {QNT_MIN, 4, "quantization min"}, {QNT_MAX, 4, "quantization max"},
        {QNT_SCALE, 4, "quantization scale"},
        {QNT_ZERO_POINT, 8, "quantization zero_point"}};
    for (size_t j = 0; j < sizeof k / sizeof k[0]; j++) {
        FB(c, fpay_fb_vec_field(&c->fb, &q, k[j].field, k[j].elem, &v, &has_v),
           k[j].what);
        quantized |= k[j].field == QNT_SCALE && has_v && v.len > 0;
    }
    if (quantized && dt != FPAY_DT_F32 && dt != FPAY_DT_F16)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "int8 quantized tensors are not supported (%s tensor "
                    "with a quantization scale)", fpay_dtype_str(dt));
    return FPAY_OK;
}

/* The tensor's bytes: the buffer must hold exactly count x element size. */
static fpay_status tensor_data(imp *c, uint32_t buf, int64_t count,
                               fpay_tensor *t)
{
    if (buf >= c->n_bufs && !(buf == 0 && c->n_bufs == 0))
        return fail(c, FPAY_MODEL_MALFORMED,
                    "buffer index %u out of range (%u buffers)", buf,
                    c->n_bufs);
    if (c->n_bufs == 0 || c->bufs[buf].len == 0)
        return FPAY_OK; /* not a constant */
    buf_ref *b = &c->bufs[buf];
    uint64_t need = (uint64_t)count * fpay_dtype_size(t->dtype);
    if (b->len != need) {
        char dims[96];
        fmt_dims(dims, sizeof dims, t->rank, t->dims);
        return fail(c, FPAY_MODEL_MALFORMED,
                    "buffer %u holds %zu bytes, shape %s %s needs %llu", buf,
                    b->len, dims, fpay_dtype_str(t->dtype),
                    (unsigned long long)need);
    }
    if (!b->copied) {
        TRY(spend(c, b->len));
        void *p = fpay_graph_alloc(c->g, b->len);
        if (!p)
            return oom(c);
        memcpy(p, c->fb.data + b->pos, b->len);
        b->copy = p;
        b->copied = true;
    }
    t->data = b->copy;
    t->nbytes = b->len;
    t->flags |= FPAY_TENSOR_CONST;
    return FPAY_OK;
}

static fpay_status read_tensor(imp *c, uint32_t i, const fpay_fb_table *tt)
{
    fpay_tensor t;
    fpay_fb_vec shape;
    fpay_fb_table sparsity;
    const char *name;
    uint32_t name_len, buf;
    int8_t type;
    uint8_t is_var;
    bool has_shape, has_name, has_sparsity;
    char gen[32];

    memset(&t, 0, sizeof t);
    where(c, "tensor %u", i);
    FB(c, fpay_fb_str_field(&c->fb, tt, TEN_NAME, &name, &name_len, &has_name),
       "name");
    if (has_name) {
        TRY(spend(c, name_len));
    } else {
        snprintf(gen, sizeof gen, "tensor_%u", i);
        name = gen;
        name_len = (uint32_t)strlen(gen);
    }
    t.name = fpay_graph_strdup(c->g, name, name_len);
    if (!t.name)
        return oom(c);
    where(c, "tensor %u '%.64s'", i, t.name);

    FB(c, fpay_fb_vec_field(&c->fb, tt, TEN_SHAPE, 4, &shape, &has_shape),
       "shape");
    FB(c, fpay_fb_i8(&c->fb, tt, TEN_TYPE, 0, &type), "type");
    FB(c, fpay_fb_u32(&c->fb, tt, TEN_BUFFER, 0, &buf), "buffer");
    FB(c, fpay_fb_u8(&c->fb, tt, TEN_IS_VARIABLE, 0, &is_var), "is_variable");
    FB(c, fpay_fb_table_field(&c->fb, tt, TEN_SPARSITY, &sparsity,
                              &has_sparsity), "sparsity");
    if (!map_dtype(type, &t.dtype))
        return fail(c, FPAY_MODEL_UNSUPPORTED, "type %s (%d) is not supported",
                    tensor_type_name(type), type);
    if (is_var)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "variable tensors are not supported");
    if (has_sparsity)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "sparse tensors are not supported");
    TRY(read_quantization(c, tt, t.dtype));

    if (has_shape && shape.len > FPAY_MAX_RANK)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "rank %u exceeds the maximum of %d", shape.len,
                    FPAY_MAX_RANK);
    t.rank = has_shape ? (int)shape.len : 0;
    /* Element count within the limit graph.h uses (INT64_MAX / 16): then
     * count * element size cannot overflow either. */
    int64_t count = 1;
    for (int d = 0; d < t.rank; d++) {
        int32_t v;
        FB(c, fpay_fb_vec_i32(&c->fb, &shape, (uint32_t)d, &v), "shape");
        if (v < 0)
            return fail(c, FPAY_MODEL_MALFORMED, "dim %d is %d", d, v);
        t.dims[d] = v;
        if (v > 0 && count > (INT64_MAX / 16) / v)
            return fail(c, FPAY_MODEL_MALFORMED, "element count overflows");
        count *= v;
    }
    TRY(tensor_data(c, buf, count, &t));
    if (t.flags & FPAY_TENSOR_CONST)
        c->written[i] = 1;
    int idx = fpay_graph_add_tensor(c->g, &t);
    if (idx < 0)
        return oom(c);
    return FPAY_OK;
}

/* Subgraph inputs or outputs: indices in range, no duplicates. */
static fpay_status read_io(imp *c, const fpay_fb_vec *v, bool is_input)
{
    const char *what = is_input ? "input" : "output";
    unsigned flag = is_input ? FPAY_TENSOR_INPUT : FPAY_TENSOR_OUTPUT;
    where(c, "subgraph");
    if (v->len == 0)
        return fail(c, is_input ? FPAY_MODEL_UNSUPPORTED : FPAY_MODEL_MALFORMED,
                    "no %ss", what);
    int *list = fpay_graph_alloc(c->g, (size_t)v->len * sizeof(int));
    if (!list)
        return oom(c);
    for (uint32_t k = 0; k < v->len; k++) {
        int32_t t;
        where(c, "graph %s %u", what, k);
        FB(c, fpay_fb_vec_i32(&c->fb, v, k, &t), "index");
        if (t < 0 || (uint32_t)t >= c->n_tensors)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "tensor index %d out of range (%u tensors)", t,
                        c->n_tensors);
        fpay_tensor *ten = &c->g->tensors[t];
        if (ten->flags & flag)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "tensor %d '%s' is listed twice", t, ten->name);
        if (is_input && (ten->flags & FPAY_TENSOR_CONST))
            return fail(c, FPAY_MODEL_MALFORMED,
                        "tensor %d '%s' has constant data", t, ten->name);
        ten->flags |= flag;
        if (is_input)
            c->written[t] = 1;
        list[k] = t;
    }
    *(is_input ? &c->g->inputs : &c->g->outputs) = list;
    *(is_input ? &c->g->n_inputs : &c->g->n_outputs) = (int)v->len;
    return FPAY_OK;
}

/* ------------------------------------------------------- operator options */

/* The operator's options table; vt_len 0 (every field absent, so every
 * read gives the schema default) when the file has none. */
typedef struct op_ctx {
    const op_desc *desc;
    fpay_fb_table opts;
} op_ctx;

static fpay_status read_act(imp *c, const op_ctx *o, int field, fpay_act *act)
{
    int8_t a;
    FB(c, fpay_fb_i8(&c->fb, &o->opts, field, 0, &a),
       "fused_activation_function");
    switch (a) {
    case 0: *act = FPAY_ACT_NONE; return FPAY_OK;
    case 1: *act = FPAY_ACT_RELU; return FPAY_OK;
    case 2: *act = FPAY_ACT_RELU_N1_TO_1; return FPAY_OK;
    case 3: *act = FPAY_ACT_RELU6; return FPAY_OK;
    case 4:
    case 5:
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "fused activation %s is not supported",
                    a == 4 ? "TANH" : "SIGN_BIT");
    default:
        return fail(c, FPAY_MODEL_MALFORMED,
                    "fused activation %d is not a known value", a);
    }
}

static fpay_status read_padding(imp *c, const op_ctx *o, fpay_padding *p)
{
    int8_t v;
    FB(c, fpay_fb_i8(&c->fb, &o->opts, 0, 0, &v), "padding");
    if (v != 0 && v != 1)
        return fail(c, FPAY_MODEL_MALFORMED,
                    "padding %d is neither SAME (0) nor VALID (1)", v);
    *p = v == 0 ? FPAY_PAD_SAME : FPAY_PAD_VALID;
    return FPAY_OK;
}

/* An int32 option that must be >= 1 (strides, dilations, filter sizes,
 * depth multiplier); a missing one takes def. */
static fpay_status read_pos(imp *c, const op_ctx *o, int field, int32_t def,
                            const char *what, int *out)
{
    int32_t v;
    FB(c, fpay_fb_i32(&c->fb, &o->opts, field, def, &v), what);
    if (v < 1)
        return fail(c, FPAY_MODEL_MALFORMED, "%s is %d, must be >= 1", what,
                    v);
    *out = v;
    return FPAY_OK;
}

/* The values of a CONST int32 tensor of rank 0 or 1: an operand that is
 * really a parameter (reduce axes, reshape shape, slice bounds). */
static fpay_status const_i32(imp *c, int t, const char *what, int32_t *vals,
                             int max, int *count)
{
    const fpay_tensor *ten = &c->g->tensors[t];
    if (!(ten->flags & FPAY_TENSOR_CONST) || ten->dtype != FPAY_DT_I32 ||
        ten->rank > 1)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "%s (tensor %d '%s') must be a constant int32 scalar or "
                    "1-D tensor", what, t, ten->name);
    size_t n = ten->nbytes / 4;
    if (n > (size_t)max)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "%s (tensor %d) has %zu values, at most %d supported",
                    what, t, n, max);
    memcpy(vals, ten->data, n * 4);
    *count = (int)n;
    return FPAY_OK;
}

static fpay_status opts_conv(imp *c, const op_ctx *o, fpay_node *n, bool dw)
{
    fpay_conv_attr *a = &n->attr.conv;
    /* Conv2DOptions: padding stride_w stride_h act dilation_w dilation_h;
     * DepthwiseConv2DOptions has depth_multiplier before act. */
    int d = dw ? 1 : 0;
    TRY(read_padding(c, o, &a->padding));
    TRY(read_pos(c, o, 1, 0, "stride_w", &a->stride_w));
    TRY(read_pos(c, o, 2, 0, "stride_h", &a->stride_h));
    if (dw)
        TRY(read_pos(c, o, 3, 0, "depth_multiplier", &a->depth_multiplier));
    TRY(read_act(c, o, 3 + d, &n->act));
    TRY(read_pos(c, o, 4 + d, 1, "dilation_w_factor", &a->dilation_w));
    return read_pos(c, o, 5 + d, 1, "dilation_h_factor", &a->dilation_h);
}

static fpay_status opts_pool(imp *c, const op_ctx *o, fpay_node *n)
{
    fpay_pool_attr *a = &n->attr.pool;
    TRY(read_padding(c, o, &a->padding));
    TRY(read_pos(c, o, 1, 0, "stride_w", &a->stride_w));
    TRY(read_pos(c, o, 2, 0, "stride_h", &a->stride_h));
    TRY(read_pos(c, o, 3, 0, "filter_width", &a->filter_w));
    TRY(read_pos(c, o, 4, 0, "filter_height", &a->filter_h));
    return read_act(c, o, 5, &n->act);
}

static fpay_status opts_fc(imp *c, const op_ctx *o, fpay_node *n)
{
    int8_t fmt;
    uint8_t keep;
    TRY(read_act(c, o, 0, &n->act));
    FB(c, fpay_fb_i8(&c->fb, &o->opts, 1, 0, &fmt), "weights_format");
    FB(c, fpay_fb_u8(&c->fb, &o->opts, 2, 0, &keep), "keep_num_dims");
    if (fmt != 0)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "weights_format %d is not supported (only DEFAULT)", fmt);
    n->attr.fc.keep_num_dims = keep != 0;
    return FPAY_OK;
}

static fpay_status opts_concat(imp *c, const op_ctx *o, fpay_node *n)
{
    int32_t axis;
    int rank = c->g->tensors[n->outputs[0]].rank;
    FB(c, fpay_fb_i32(&c->fb, &o->opts, 0, 0, &axis), "axis");
    TRY(read_act(c, o, 1, &n->act));
    /* Normalised against the declared output rank. */
    if (axis < -rank || axis >= rank)
        return fail(c, FPAY_MODEL_MALFORMED, "axis %d out of range for rank %d",
                    axis, rank);
    n->attr.concat.axis = axis < 0 ? axis + rank : axis;
    return FPAY_OK;
}

static fpay_status opts_reduce(imp *c, const op_ctx *o, fpay_node *n)
{
    int32_t axes[16];
    int count;
    uint8_t keep;
    int rank = c->g->tensors[n->inputs[0]].rank;
    TRY(const_i32(c, n->inputs[1], "axis", axes, 16, &count));
    if (count == 0)
        return fail(c, FPAY_MODEL_UNSUPPORTED, "reduction over no axes");
    unsigned mask = 0;
    for (int k = 0; k < count; k++) {
        if (axes[k] < -rank || axes[k] >= rank)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "axis %d out of range for input rank %d", axes[k],
                        rank);
        mask |= 1u << (axes[k] < 0 ? axes[k] + rank : axes[k]);
    }
    FB(c, fpay_fb_u8(&c->fb, &o->opts, 0, 0, &keep), "keep_dims");
    n->attr.reduce.axes_mask = mask;
    n->attr.reduce.keep_dims = keep != 0;
    n->n_inputs = 1;
    return FPAY_OK;
}

static fpay_status opts_reshape(imp *c, const op_ctx *o, fpay_node *n)
{
    int32_t dims[FPAY_MAX_RANK];
    int count = 0, inferred = 0;
    fpay_reshape_attr *a = &n->attr.reshape;
    const fpay_tensor *in = &c->g->tensors[n->inputs[0]];
    const fpay_tensor *shp = n->n_inputs == 2 ? &c->g->tensors[n->inputs[1]]
                                              : NULL;
    if (shp && (shp->flags & FPAY_TENSOR_CONST) && shp->dtype == FPAY_DT_I32 &&
        shp->rank <= 1) {
        TRY(const_i32(c, n->inputs[1], "shape", dims, FPAY_MAX_RANK, &count));
    } else {
        fpay_fb_vec v;
        bool has;
        FB(c, fpay_fb_vec_field(&c->fb, &o->opts, 0, 4, &v, &has), "new_shape");
        if (!has)
            return fail(c, FPAY_MODEL_UNSUPPORTED, "%s",
                        shp ? "the shape input is not a constant int32 tensor "
                              "and there is no new_shape option"
                            : "no shape input and no new_shape option");
        if (v.len > FPAY_MAX_RANK)
            return fail(c, FPAY_MODEL_UNSUPPORTED,
                        "new_shape has %u dims, at most %d supported", v.len,
                        FPAY_MAX_RANK);
        count = (int)v.len;
        for (int k = 0; k < count; k++)
            FB(c, fpay_fb_vec_i32(&c->fb, &v, (uint32_t)k, &dims[k]),
               "new_shape");
    }
    for (int k = 0; k < count; k++) {
        if (dims[k] < -1)
            return fail(c, FPAY_MODEL_MALFORMED, "new shape dim %d is %d", k,
                        dims[k]);
        if (dims[k] == -1 && ++inferred > 1)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "new shape has more than one -1");
        a->dims[k] = dims[k];
    }
    a->rank = count;
    /* A model converted at batch N often bakes N into the target shape; the
     * flag lets shape inference follow the input's batch instead. */
    a->batch_follows = count >= 1 && in->rank >= 2 && a->dims[0] == in->dims[0];
    n->n_inputs = 1;
    return FPAY_OK;
}

static fpay_status opts_slice(imp *c, const op_ctx *o, fpay_node *n)
{
    int32_t v[3][FPAY_MAX_RANK], m[5];
    int cnt[3];
    uint8_t offset;
    static const char *const what[3] = {"begin", "end", "strides"};
    static const char *const mname[5] = {"begin_mask", "end_mask",
        "ellipsis_mask", "new_axis_mask", "shrink_axis_mask"};
    fpay_slice_attr *a = &n->attr.slice;
    for (int k = 0; k < 3; k++) {
        int t = n->inputs[1 + k];
        TRY(const_i32(c, t, what[k], v[k], FPAY_MAX_RANK, &cnt[k]));
        if (c->g->tensors[t].rank != 1)
            return fail(c, FPAY_MODEL_UNSUPPORTED, "%s (tensor %d) must be 1-D",
                        what[k], t);
    }
    if (cnt[0] != cnt[1] || cnt[0] != cnt[2])
        return fail(c, FPAY_MODEL_MALFORMED,
                    "begin/end/strides have %d/%d/%d values", cnt[0], cnt[1],
                    cnt[2]);
    a->rank = cnt[0];
    for (int k = 0; k < a->rank; k++) {
        if (v[2][k] == 0)
            return fail(c, FPAY_MODEL_MALFORMED, "stride %d is 0", k);
        a->begin[k] = v[0][k];
        a->end[k] = v[1][k];
        a->strides[k] = v[2][k];
    }
    for (int k = 0; k < 5; k++)
        FB(c, fpay_fb_i32(&c->fb, &o->opts, k, 0, &m[k]), mname[k]);
    FB(c, fpay_fb_u8(&c->fb, &o->opts, 5, 0, &offset), "offset");
    if (offset)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "offset=true (end relative to begin) is not supported");
    a->begin_mask = m[0];
    a->end_mask = m[1];
    a->ellipsis_mask = m[2];
    a->new_axis_mask = m[3];
    a->shrink_axis_mask = m[4];
    n->n_inputs = 1;
    return FPAY_OK;
}

/* Options -> node attributes, per op. */
static fpay_status read_options(imp *c, const op_ctx *o, fpay_node *n)
{
    float f;
    fpay_act act;
    switch (o->desc->builtin) {
    case TFL_CONV_2D: return opts_conv(c, o, n, false);
    case TFL_DEPTHWISE_CONV_2D: return opts_conv(c, o, n, true);
    case TFL_AVERAGE_POOL_2D:
    case TFL_MAX_POOL_2D: return opts_pool(c, o, n);
    case TFL_FULLY_CONNECTED: return opts_fc(c, o, n);
    case TFL_ADD:
    case TFL_SUB:
    case TFL_MUL:
    case TFL_DIV: return read_act(c, o, 0, &n->act);
    case TFL_CONCATENATION: return opts_concat(c, o, n);
    case TFL_SUM:
    case TFL_REDUCE_MAX: return opts_reduce(c, o, n);
    case TFL_RESHAPE: return opts_reshape(c, o, n);
    case TFL_STRIDED_SLICE: return opts_slice(c, o, n);
    case TFL_CAST:
        n->attr.cast.to = c->g->tensors[n->outputs[0]].dtype;
        return FPAY_OK;
    case TFL_LEAKY_RELU:
        FB(c, fpay_fb_f32(&c->fb, &o->opts, 0, 0.0f, &f), "alpha");
        if (!isfinite(f))
            return fail(c, FPAY_MODEL_MALFORMED, "alpha is not finite");
        n->attr.leaky.alpha = f;
        return FPAY_OK;
    case TFL_SOFTMAX:
        FB(c, fpay_fb_f32(&c->fb, &o->opts, 0, 0.0f, &f), "beta");
        if (f != 1.0f)
            return fail(c, FPAY_MODEL_UNSUPPORTED,
                        "beta %g is not supported (only 1)", (double)f);
        return FPAY_OK;
    case TFL_L2_NORMALIZATION:
        TRY(read_act(c, o, 0, &act));
        if (act != FPAY_ACT_NONE)
            return fail(c, FPAY_MODEL_UNSUPPORTED,
                        "a fused activation is not supported here");
        /* TFLite divides by max(sqrt(sum x^2), 1e-6); our kernel divides by
         * sqrt(max(sum x^2, epsilon)), the same for epsilon = 1e-12. */
        n->attr.l2.epsilon = 1e-12f;
        return FPAY_OK;
    default:
        return FPAY_OK; /* no options */
    }
}

/* ----------------------------------------------------------- operators */

/* "TANH (builtin 28)", "custom op 'X'" or "builtin 200" into out. */
static void describe_opcode(imp *c, uint32_t opcode, char *out, size_t len)
{
    int32_t code = c->codes[opcode];
    if (code == TFL_CUSTOM) {
        /* read_opcodes checked this table and its string already. */
        fpay_fb_table t;
        const char *s = NULL;
        uint32_t slen;
        bool has = false;
        if (fpay_fb_vec_table(&c->fb, &c->opcode_vec, opcode, &t))
            (void)fpay_fb_str_field(&c->fb, &t, OPC_CUSTOM_CODE, &s, &slen,
                                    &has);
        snprintf(out, len, "custom op '%.64s'", has ? s : "");
    } else if (code < (int32_t)(sizeof k_builtin_names / sizeof k_builtin_names[0])) {
        snprintf(out, len, "%s (builtin %d)", builtin_name(code), code);
    } else {
        snprintf(out, len, "builtin %d", code);
    }
}

/* Before any operator is read: every operator whose op the importer does
 * not map, all of them in one message ("unsupported ops: TANH (builtin 28)
 * at operators 1, 3; custom op 'X' at operator 2"), so that whoever converts
 * a model learns at once everything that has to change, not one op per
 * try. Opcode indices out of range are left to read_operator. */
static fpay_status check_ops_supported(imp *c, const fpay_fb_vec *ops)
{
    if (c->n_codes == 0)
        return FPAY_OK;
    /* Per opcode: how many operators use it, and the first few of them. */
    enum { SHOWN = 4 };
    uint32_t *uses = calloc(c->n_codes, sizeof *uses);
    uint32_t(*first)[SHOWN] = calloc(c->n_codes, sizeof *first);
    if (!uses || !first) {
        free(uses);
        free(first);
        return oom(c);
    }
    uint32_t kinds = 0;
    for (uint32_t i = 0; i < ops->len; i++) {
        fpay_fb_table ot;
        uint32_t opcode;
        if (!fpay_fb_vec_table(&c->fb, ops, i, &ot) ||
            !fpay_fb_u32(&c->fb, &ot, OPR_OPCODE_INDEX, 0, &opcode) ||
            opcode >= c->n_codes || find_op(c->codes[opcode]))
            continue; /* read_operator reports damage with its position */
        if (uses[opcode] < SHOWN)
            first[opcode][uses[opcode]] = i;
        kinds += uses[opcode]++ == 0;
    }
    fpay_status st = FPAY_OK;
    if (kinds) {
        char msg[300];
        size_t used = 0;
        for (uint32_t k = 0; k < c->n_codes && used < sizeof msg; k++) {
            if (!uses[k])
                continue;
            char name[96];
            describe_opcode(c, k, name, sizeof name);
            int w = snprintf(msg + used, sizeof msg - used, "%s%s at operator%s", used ? "; " : "",
                             name, uses[k] > 1 ? "s" : "");
            for (uint32_t j = 0; w > 0 && j < uses[k] && j < SHOWN; j++) {
                used += (size_t)w;
                if (used >= sizeof msg)
                    break;
                w = snprintf(msg + used, sizeof msg - used, "%s %u", j ? "," : "", first[k][j]);
            }
            if (w > 0)
                used += (size_t)w;
            if (uses[k] > SHOWN && used < sizeof msg)
                used += (size_t)snprintf(msg + used, sizeof msg - used, " and %u more",
                                         uses[k] - SHOWN);
        }
        where(c, "subgraph");
        st = fail(c, FPAY_MODEL_UNSUPPORTED, "unsupported op%s: %s", kinds > 1 ? "s" : "", msg);
    }
    free(uses);
    free(first);
    return st;
}

static fpay_status unsupported_op(imp *c, uint32_t opcode)
{
    char name[96];
    describe_opcode(c, opcode, name, sizeof name);
    return fail(c, FPAY_MODEL_UNSUPPORTED, "unsupported %s", name);
}

/* Operator inputs: in range, written before (topological order), -1 only
 * for the optional bias; a missing bias becomes an explicit -1. */
static fpay_status read_inputs(imp *c, const op_ctx *o, const fpay_fb_vec *ins,
                               fpay_node *n)
{
    for (uint32_t k = 0; k < ins->len; k++) {
        int32_t t;
        FB(c, fpay_fb_vec_i32(&c->fb, ins, k, &t), "inputs");
        if (t == -1 && (int)k == o->desc->optional_in) {
            n->inputs[k] = -1;
            continue;
        }
        if (t == -1)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "input %u is absent (-1) but not optional", k);
        if (t < 0 || (uint32_t)t >= c->n_tensors)
            return fail(c, FPAY_MODEL_MALFORMED,
                        "input %u: tensor index %d out of range (%u tensors)",
                        k, t, c->n_tensors);
        if (!c->written[t])
            return fail(c, FPAY_MODEL_MALFORMED,
                        "input %u reads tensor %d '%s' before any operator "
                        "writes it", k, t, tname(c, t));
        n->inputs[k] = t;
    }
    n->n_inputs = (int)ins->len;
    if (o->desc->optional_in >= 0 && n->n_inputs == o->desc->optional_in)
        n->inputs[n->n_inputs++] = -1; /* conv/dwconv/fc: always 3 inputs */
    return FPAY_OK;
}

static fpay_status read_operator(imp *c, uint32_t i, const fpay_fb_table *ot)
{
    uint32_t opcode;
    fpay_fb_vec ins, outs, custom;
    bool has_ins, has_outs, has_opts, has_custom;
    uint8_t opt_type;
    fpay_fb_table opts;
    op_ctx o;
    fpay_node n;
    int32_t t;

    where(c, "operator %u", i);
    FB(c, fpay_fb_u32(&c->fb, ot, OPR_OPCODE_INDEX, 0, &opcode),
       "opcode_index");
    FB(c, fpay_fb_vec_field(&c->fb, ot, OPR_INPUTS, 4, &ins, &has_ins),
       "inputs");
    FB(c, fpay_fb_vec_field(&c->fb, ot, OPR_OUTPUTS, 4, &outs, &has_outs),
       "outputs");
    FB(c, fpay_fb_u8(&c->fb, ot, OPR_OPTIONS_TYPE, 0, &opt_type),
       "builtin_options_type");
    FB(c, fpay_fb_table_field(&c->fb, ot, OPR_OPTIONS, &opts, &has_opts),
       "builtin_options");
    FB(c, fpay_fb_vec_field(&c->fb, ot, OPR_CUSTOM_OPTIONS, 1, &custom,
                            &has_custom), "custom_options");
    if (opcode >= c->n_codes)
        return fail(c, FPAY_MODEL_MALFORMED,
                    "opcode index %u out of range (%u operator codes)", opcode,
                    c->n_codes);
    memset(&o, 0, sizeof o);
    o.desc = find_op(c->codes[opcode]);
    if (!o.desc)
        return unsupported_op(c, opcode);
    where(c, "operator %u (%s)", i, builtin_name(o.desc->builtin));
    /* A union tag of another options table means writer and reader disagree
     * about the schema: its fields would be read as garbage. */
    if (opt_type != OPT_NONE && opt_type != o.desc->opt_type)
        return fail(c, FPAY_MODEL_MALFORMED, "builtin_options type %u does not "
                    "belong to this op (expected %u)", opt_type,
                    o.desc->opt_type);
    if (opt_type != OPT_NONE && has_opts)
        o.opts = opts;

    uint32_t n_in = has_ins ? ins.len : 0, n_out = has_outs ? outs.len : 0;
    if (n_in > FPAY_MAX_NODE_INPUTS)
        return fail(c, FPAY_MODEL_UNSUPPORTED, "has %u inputs, at most %d "
                    "supported", n_in, FPAY_MAX_NODE_INPUTS);
    if (n_in < (uint32_t)o.desc->min_in || n_in > (uint32_t)o.desc->max_in)
        return fail(c, FPAY_MODEL_MALFORMED, "has %u inputs, expected %d..%d",
                    n_in, o.desc->min_in, o.desc->max_in);
    if (n_out != 1)
        return fail(c, FPAY_MODEL_MALFORMED, "has %u outputs, expected 1",
                    n_out);

    fpay_node_init(&n, o.desc->op);
    n.source_index = (int)i;
    if (has_ins)
        TRY(read_inputs(c, &o, &ins, &n));
    FB(c, fpay_fb_vec_i32(&c->fb, &outs, 0, &t), "outputs");
    if (t < 0 || (uint32_t)t >= c->n_tensors)
        return fail(c, FPAY_MODEL_MALFORMED,
                    "output: tensor index %d out of range (%u tensors)", t,
                    c->n_tensors);
    unsigned flags = c->g->tensors[t].flags;
    if (c->written[t])
        return fail(c, FPAY_MODEL_MALFORMED, "writes tensor %d '%s', which %s",
                    t, tname(c, t),
                    (flags & FPAY_TENSOR_CONST)   ? "is constant"
                    : (flags & FPAY_TENSOR_INPUT) ? "is a graph input"
                    : "an earlier operator already wrote");
    n.outputs[0] = t;
    n.n_outputs = 1;
    TRY(read_options(c, &o, &n));
    c->written[t] = 1;
    if (fpay_graph_add_node(c->g, &n) < 0)
        return oom(c);
    return FPAY_OK;
}

/* --------------------------------------------------------------- model */

static fpay_status read_subgraph(imp *c, const fpay_fb_table *sg)
{
    fpay_fb_vec tensors, ins, outs, ops;
    bool has_t, has_i, has_o, has_ops, has_name;
    const char *name;
    uint32_t name_len;
    where(c, "subgraph");
    FB(c, fpay_fb_vec_field(&c->fb, sg, SG_TENSORS, 4, &tensors, &has_t),
       "tensors");
    FB(c, fpay_fb_vec_field(&c->fb, sg, SG_INPUTS, 4, &ins, &has_i), "inputs");
    FB(c, fpay_fb_vec_field(&c->fb, sg, SG_OUTPUTS, 4, &outs, &has_o),
       "outputs");
    FB(c, fpay_fb_vec_field(&c->fb, sg, SG_OPERATORS, 4, &ops, &has_ops),
       "operators");
    FB(c, fpay_fb_str_field(&c->fb, sg, SG_NAME, &name, &name_len, &has_name),
       "name");
    /* Counts are bounded by the file size (4 bytes per element), but a file
     * over 8 GB could still exceed int. */
    if (tensors.len > INT_MAX || ops.len > INT_MAX)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "too many tensors or operators (%u, %u)", tensors.len,
                    ops.len);
    c->n_tensors = tensors.len;
    c->written = calloc((size_t)tensors.len + 1, 1);
    if (!c->written)
        return oom(c);
    for (uint32_t i = 0; i < tensors.len; i++) {
        fpay_fb_table tt;
        where(c, "tensor %u", i);
        FB(c, fpay_fb_vec_table(&c->fb, &tensors, i, &tt), "table");
        TRY(read_tensor(c, i, &tt));
    }
    TRY(read_io(c, &ins, true));
    TRY(read_io(c, &outs, false));
    where(c, "subgraph");
    if (ops.len == 0)
        return fail(c, FPAY_MODEL_UNSUPPORTED, "no operators");
    TRY(check_ops_supported(c, &ops));
    for (uint32_t i = 0; i < ops.len; i++) {
        fpay_fb_table ot;
        where(c, "operator %u", i);
        FB(c, fpay_fb_vec_table(&c->fb, &ops, i, &ot), "table");
        TRY(read_operator(c, i, &ot));
    }
    for (int k = 0; k < c->g->n_outputs; k++) {
        int t = c->g->outputs[k];
        where(c, "graph output %d", k);
        if (!c->written[t])
            return fail(c, FPAY_MODEL_MALFORMED,
                        "tensor %d '%s' is never written", t, tname(c, t));
    }
    return FPAY_OK;
}

static fpay_status read_model(imp *c)
{
    const uint8_t *d = c->fb.data;
    fpay_fb_table root, sg;
    fpay_fb_vec subgraphs, buffers;
    bool has_sg, has_buf, has_codes, has_desc;
    uint32_t version, desc_len;
    const char *desc;

    if (c->fb.size < 8)
        return fail(c, FPAY_MODEL_MALFORMED,
                    "file is %zu bytes, too short for a TFLite model",
                    c->fb.size);
    if (memcmp(d + 4, "TFL3", 4) != 0) {
        char id[20];
        int used = 0;
        for (int k = 4; k < 8; k++)
            used += snprintf(id + used, sizeof id - (size_t)used,
                             d[k] >= 0x20 && d[k] < 0x7f ? "%c" : "\\x%02x",
                             d[k]);
        return fail(c, FPAY_MODEL_MALFORMED, "file identifier is \"%s\", "
                    "expected \"TFL3\" (not a TFLite model)", id);
    }
    where(c, "model");
    FB(c, fpay_fb_root(&c->fb, &root), "root");
    FB(c, fpay_fb_u32(&c->fb, &root, MODEL_VERSION, 0, &version), "version");
    if (version != 3)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "schema version %u is not supported (only 3)", version);
    FB(c, fpay_fb_str_field(&c->fb, &root, MODEL_DESCRIPTION, &desc, &desc_len,
                            &has_desc), "description");
    FB(c, fpay_fb_vec_field(&c->fb, &root, MODEL_OPCODES, 4, &c->opcode_vec,
                            &has_codes), "operator_codes");
    FB(c, fpay_fb_vec_field(&c->fb, &root, MODEL_BUFFERS, 4, &buffers,
                            &has_buf), "buffers");
    FB(c, fpay_fb_vec_field(&c->fb, &root, MODEL_SUBGRAPHS, 4, &subgraphs,
                            &has_sg), "subgraphs");
    if (!has_sg || subgraphs.len == 0)
        return fail(c, FPAY_MODEL_MALFORMED, "no subgraphs");
    if (subgraphs.len > 1)
        return fail(c, FPAY_MODEL_UNSUPPORTED,
                    "%u subgraphs, only 1 is supported", subgraphs.len);
    TRY(read_opcodes(c, &c->opcode_vec));
    TRY(read_buffers(c, &buffers));
    where(c, "subgraph 0");
    FB(c, fpay_fb_vec_table(&c->fb, &subgraphs, 0, &sg), "table");
    return read_subgraph(c, &sg);
}

fpay_status fpay_tflite_import(const uint8_t *data, size_t size, fpay_graph *g,
                               char *err, size_t err_len)
{
    imp c;
    memset(&c, 0, sizeof c);
    c.err = err;
    c.err_len = err_len;
    if (err && err_len)
        err[0] = '\0';
    if (!g || (!data && size > 0))
        return fail(&c, FPAY_INVALID_ARGUMENT,
                    "fpay_tflite_import: NULL graph or data");
    if (g->n_tensors != 0 || g->n_nodes != 0)
        return fail(&c, FPAY_INVALID_ARGUMENT,
                    "fpay_tflite_import: the graph is not empty");
    c.g = g;
    fpay_fb_init(&c.fb, data, size);
    c.copy_budget = size;
    fpay_status st = read_model(&c);
    free(c.codes);
    free(c.bufs);
    free(c.written);
    return st;
}
