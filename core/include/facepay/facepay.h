/*
 * facepay.h - the public C API of libfacepay.
 *
 * This header is the authoritative documentation of the API. Rules that hold
 * for every function below:
 *   - Every call that can fail returns an fpay_status; results come back
 *     through out-pointers, which are left untouched on failure unless the
 *     function says otherwise.
 *   - Handles are opaque. Whoever creates a handle frees it with the matching
 *     *_free function; *_free(NULL) is a no-op.
 *   - Constructors that have no handle yet to carry an error take an optional
 *     caller-owned buffer (err, err_len) that receives one line naming the
 *     problem. Calls on an existing handle record their message in the handle
 *     (fpay_session_errmsg).
 *   - Ownership of every pointer parameter is stated next to it: "copied"
 *     (the library keeps its own copy), "borrowed" (used only during the
 *     call), or "must outlive X".
 *   - A handle may be used by one thread at a time; distinct handles may be
 *     used concurrently. A model may be shared by several sessions on
 *     different threads (sessions only read it).
 */
#ifndef FACEPAY_FACEPAY_H
#define FACEPAY_FACEPAY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FPAY_VERSION_MAJOR 0
#define FPAY_VERSION_MINOR 1
#define FPAY_VERSION_PATCH 0
#define FPAY_VERSION_STRING "0.1.0"

#if defined(FPAY_BUILDING_LIBRARY) && defined(__GNUC__)
#define FPAY_API __attribute__((visibility("default")))
#else
#define FPAY_API
#endif

/* ---------------------------------------------------------------- status */

/* One list generates the enum and the strings (fpay_status_str). Codes are
 * stable: new ones are appended, never renumbered. */
#define FPAY_STATUS_LIST(X)                                                   \
    X(OK, 0, "ok")                                                            \
    X(INVALID_ARGUMENT, 1, "invalid argument")                                \
    X(OUT_OF_MEMORY, 2, "out of memory")                                      \
    X(IO_ERROR, 3, "i/o error")                                               \
    X(MODEL_MALFORMED, 4, "model file is malformed")                          \
    X(MODEL_UNSUPPORTED, 5, "model uses an unsupported feature")              \
    X(SHAPE_MISMATCH, 6, "tensor shape mismatch")                             \
    X(BACKEND_UNAVAILABLE, 7, "backend unavailable")                          \
    X(NOT_FOUND, 8, "not found")                                              \
    X(IMAGE_INVALID, 9, "image is invalid or unsupported")                    \
    X(LIMIT_EXCEEDED, 10, "input exceeds a configured limit")                 \
    X(INTERNAL, 11, "internal error")

typedef enum fpay_status {
#define FPAY_STATUS_ENUM_(name, code, text) FPAY_##name = code,
    FPAY_STATUS_LIST(FPAY_STATUS_ENUM_)
#undef FPAY_STATUS_ENUM_
} fpay_status;

/* A static string for any status, also for values not in the list. */
FPAY_API const char *fpay_status_str(fpay_status status);

/* Run-time version ("0.1.0") and build id ("<git hash>[-dirty] <compiler>
 * <build type> isa:<ISAs compiled in> abi:<backend ABI>"). Static strings. */
FPAY_API const char *fpay_version(void);
FPAY_API const char *fpay_build_id(void);

/* ----------------------------------------------------------------- model */

typedef struct fpay_model fpay_model;

/* Load flags. */
enum {
    FPAY_LOAD_DEFAULT = 0,
    /* Keep the graph exactly as imported (no optimizer passes): for
     * inspection and for testing the optimizer. */
    FPAY_LOAD_NO_OPTIMIZE = 1u << 0,
};

/* Load a TFLite flatbuffer from a file. The file is read completely and
 * checked; nothing from it is trusted. On success *out receives a model the
 * caller frees with fpay_model_free. On failure *out is set to NULL and err
 * (caller-owned, may be NULL) receives one line naming the problem. */
FPAY_API fpay_status fpay_model_load_file(const char *path, unsigned flags,
                                          fpay_model **out, char *err,
                                          size_t err_len);

/* Same from memory. data is borrowed: it is copied during the call and may be
 * freed as soon as the call returns. */
FPAY_API fpay_status fpay_model_load_memory(const void *data, size_t size,
                                            unsigned flags, fpay_model **out,
                                            char *err, size_t err_len);

/* Frees the model. Every session created from it must be freed first. */
FPAY_API void fpay_model_free(fpay_model *model);

/* What fpay_model_stats reports. struct_size lets the struct grow. */
typedef struct fpay_model_stats {
    size_t struct_size;        /* set by the caller to sizeof(fpay_model_stats) */
    int imported_nodes;        /* operators in the file */
    int nodes;                 /* nodes after optimisation */
    int tensors;               /* tensors after optimisation */
    int inputs, outputs;
    int64_t parameters;        /* elements of constant tensors used by nodes */
    int64_t macs;              /* multiply-accumulates of conv/dwconv/fc at the
                                  declared input shape */
    char sha256[65];           /* hex sha256 of the model file: its fingerprint */
} fpay_model_stats;

FPAY_API fpay_status fpay_model_stats_get(const fpay_model *model,
                                          fpay_model_stats *stats);

/* Node and op inspection (for `facepay info`). Strings are owned by the model
 * and live as long as it. index is 0-based; out of range gives NULL / -1. */
FPAY_API int fpay_model_node_count(const fpay_model *model);
FPAY_API const char *fpay_model_node_op(const fpay_model *model, int index);
/* Histogram of the ops in the file as imported, before any optimisation:
 * writes "OP xN, OP xN, ..." into buf (caller-owned), most frequent first. */
FPAY_API fpay_status fpay_model_imported_ops(const fpay_model *model,
                                             char *buf, size_t buf_len);
/* Same for the graph as it is now (after optimisation). */
FPAY_API fpay_status fpay_model_ops(const fpay_model *model, char *buf,
                                    size_t buf_len);

/* --------------------------------------------------------------- tensors */

#define FPAY_MAX_RANK 6

typedef enum fpay_dtype {
    FPAY_DT_F32 = 0,
    FPAY_DT_F16 = 1,
    FPAY_DT_I32 = 2,
    FPAY_DT_I64 = 3,
    FPAY_DT_U8 = 4,
    FPAY_DT_I8 = 5,
    FPAY_DT_BOOL = 6,
} fpay_dtype;

FPAY_API const char *fpay_dtype_str(fpay_dtype dtype);

typedef struct fpay_tensor_info {
    const char *name;          /* owned by the model/session */
    fpay_dtype dtype;
    int rank;
    int64_t dims[FPAY_MAX_RANK];
    size_t count;              /* number of elements */
} fpay_tensor_info;

/* ---------------------------------------------------------------- session */

typedef struct fpay_session fpay_session;

typedef struct fpay_session_options {
    size_t struct_size;        /* sizeof(fpay_session_options) */
    const char *backend;       /* "auto" (or NULL), "cpu", or a plugin name;
                                  borrowed during create */
    int threads;               /* 0 = 1 thread */
} fpay_session_options;

/* Fills opts with defaults (auto backend, 1 thread). */
FPAY_API void fpay_session_options_init(fpay_session_options *opts);

/* Creates a session that runs model on a backend. model must outlive the
 * session. opts is borrowed (NULL = defaults). The input shapes start as the
 * model declares them. */
FPAY_API fpay_status fpay_session_create(const fpay_model *model,
                                         const fpay_session_options *opts,
                                         fpay_session **out, char *err,
                                         size_t err_len);
FPAY_API void fpay_session_free(fpay_session *session);

/* The message of the last failed call on this session ("" if none). Owned by
 * the session; valid until the next call on it. */
FPAY_API const char *fpay_session_errmsg(const fpay_session *session);

/* Sets dimension 0 of every graph input to batch (>= 1) and replans shapes
 * and memory (a plan for shapes seen before comes from the session's cache:
 * set the inputs again after any reshape). */
FPAY_API fpay_status fpay_session_set_batch(fpay_session *session, int batch);

/* Sets the whole shape of input `index` (dims borrowed) and replans, as
 * fpay_session_set_batch. Used for fully convolutional models such as MTCNN's
 * P-Net. */
FPAY_API fpay_status fpay_session_set_input_shape(fpay_session *session,
                                                  int index, int rank,
                                                  const int64_t *dims);

FPAY_API int fpay_session_input_count(const fpay_session *session);
FPAY_API int fpay_session_output_count(const fpay_session *session);
FPAY_API fpay_status fpay_session_input_info(const fpay_session *session,
                                             int index, fpay_tensor_info *info);
FPAY_API fpay_status fpay_session_output_info(const fpay_session *session,
                                              int index, fpay_tensor_info *info);

/* Copies count float32 values into input `index`; count must equal the
 * input's element count exactly. data is borrowed. The session never writes
 * to an input: it keeps the values for every later run until they are set
 * again. */
FPAY_API fpay_status fpay_session_set_input(fpay_session *session, int index,
                                            const float *data, size_t count);

/* Runs the graph. */
FPAY_API fpay_status fpay_session_run(fpay_session *session);

/* Points *data at output `index` (float32) and sets *count. The memory is
 * owned by the session and valid until the next run, reshape or free. */
FPAY_API fpay_status fpay_session_output(const fpay_session *session,
                                         int index, const float **data,
                                         size_t *count);

/* Bytes of the activation arena: the peak memory of one run's intermediate
 * tensors, inputs and outputs included, at the current shapes. */
FPAY_API size_t fpay_session_peak_activation_bytes(const fpay_session *session);

/* Name of the backend the session runs on (static string). */
FPAY_API const char *fpay_session_backend(const fpay_session *session);

/* Name of the backend that runs node `index` (NULL if out of range). */
FPAY_API const char *fpay_session_node_backend(const fpay_session *session,
                                               int index);

/* ------------------------------------------------------------------- CPU */

/* What the CPU backend found on this machine and will run, as text for an
 * operator: lines "detected: ...", "supported: ref avx2 ...", "chosen: ISA
 * (FACEPAY_ISA or best detected)", then the kernel of each family. Writes at
 * most len bytes into buf, NUL-terminated (4096 is always enough).
 * FPAY_INVALID_ARGUMENT for a NULL or empty buf, or when FACEPAY_ISA names an
 * ISA this CPU or build lacks (the text then says why). */
FPAY_API fpay_status fpay_cpu_report(char *buf, size_t len);

/* ---------------------------------------------------------------- images */

/* An 8-bit interleaved RGB image. pixels has height * stride bytes. */
typedef struct fpay_image {
    int width, height;
    int stride;                /* bytes per row, >= 3 * width */
    uint8_t *pixels;
} fpay_image;

typedef struct fpay_image_limits {
    size_t max_bytes;          /* encoded input size; default 4 MiB */
    int max_side;              /* each side; default 4096 */
    int64_t max_pixels;        /* width * height; default 12,000,000 */
} fpay_image_limits;

FPAY_API void fpay_image_limits_init(fpay_image_limits *limits);

/* Decodes a JPEG or PNG held in memory (data borrowed) into 8-bit RGB.
 * limits may be NULL for the defaults; they are checked before any pixel
 * buffer is allocated. On success the caller frees out->pixels with
 * fpay_image_free. err (caller-owned, may be NULL) receives the reason of a
 * failure. */
FPAY_API fpay_status fpay_image_decode(const void *data, size_t size,
                                       const fpay_image_limits *limits,
                                       fpay_image *out, char *err,
                                       size_t err_len);
FPAY_API fpay_status fpay_image_load_file(const char *path,
                                          const fpay_image_limits *limits,
                                          fpay_image *out, char *err,
                                          size_t err_len);
FPAY_API void fpay_image_free(fpay_image *image);

/* Resizes the whole image to out_w x out_h with half-pixel-centre bilinear
 * sampling and rounds to uint8. out (caller-owned) must hold out_w*out_h*3. */
FPAY_API fpay_status fpay_image_resize_bilinear(const fpay_image *in,
                                                int out_w, int out_h,
                                                uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* FACEPAY_FACEPAY_H */
