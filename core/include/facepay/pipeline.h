/*
 * pipeline.h - the face pipeline of libfacepay: frame -> detection (MTCNN)
 * -> choice of the payer -> quality gate -> alignment (ArcFace 112x112) ->
 * liveness (FaceAntiSpoofing) -> embedding (MobileFaceNet, 192-d).
 *
 * The rules of facepay.h hold here too (status codes, "borrowed"/"copied"
 * ownership notes, one thread per handle). In addition:
 *   - A pipeline keeps the message of its last failed call
 *     (fpay_pipeline_errmsg).
 *   - Results (fpay_capture) are plain caller-owned structs with fixed-size
 *     arrays: nothing in them needs freeing and they hold no pointer into the
 *     pipeline.
 *   - A decision about the face (no face, two faces, bad quality, spoof) is
 *     NOT an error: the call returns FPAY_OK and the capture's `result`
 *     (fpay_face_result) says what happened. fpay_status is for bad
 *     arguments, bad frames, missing models and the like.
 *   - Liveness only ever blocks. A capture is FPAY_FACE_OK only when a face
 *     was found, chosen without ambiguity and passed the quality gate; the
 *     liveness check can then turn it into a refusal, never the reverse.
 *
 * docs/pipeline.md describes the stages, thresholds and what the liveness
 * model can and cannot do.
 */
#ifndef FACEPAY_PIPELINE_H
#define FACEPAY_PIPELINE_H

#include "facepay/facepay.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------- raw frames */

typedef enum fpay_pixel_format {
    FPAY_PIX_RGB24 = 0,   /* R,G,B bytes; stride >= 3*width */
    FPAY_PIX_BGR24 = 1,   /* B,G,R bytes; stride >= 3*width */
    FPAY_PIX_RGBA = 2,    /* R,G,B,A bytes (alpha ignored); stride >= 4*width */
    FPAY_PIX_NV12 = 3,    /* Y plane, then interleaved U,V at half resolution */
    FPAY_PIX_NV21 = 4,    /* Y plane, then interleaved V,U at half resolution */
} fpay_pixel_format;

/* YUV -> RGB conversion, ITU-R BT.601 in both cases:
 *   full    (JFIF, Android camera JPEG path): Y,U,V in 0..255, U/V centred on
 *           128: R = Y + 1.402 V', G = Y - 0.344136 U' - 0.714136 V',
 *           B = Y + 1.772 U'.
 *   limited (video range, most camera NV12/NV21 streams): Y in 16..235,
 *           U/V in 16..240: Y' = (Y-16)*255/219, U',V' scaled by 255/224,
 *           then the formulas above.
 * Results are rounded to nearest and clamped to 0..255. Chroma is
 * upsampled by nearest neighbour (each U,V pair covers a 2x2 block). */
typedef enum fpay_yuv_range {
    FPAY_YUV_BT601_LIMITED = 0,
    FPAY_YUV_BT601_FULL = 1,
} fpay_yuv_range;

/* A camera frame, borrowed for the duration of a call. */
typedef struct fpay_frame {
    fpay_pixel_format format;
    int width, height;            /* > 0; NV12/NV21 need both even */
    const uint8_t *data;          /* plane 0 (packed pixels or Y) */
    size_t size;                  /* bytes readable at data */
    int stride;                   /* bytes per row of plane 0 (>= the row) */
    /* NV12/NV21 only: the interleaved chroma plane of height/2 rows of
     * width bytes. NULL means it follows plane 0 in the same buffer at
     * data + height*stride (then `size` must cover both planes). */
    const uint8_t *uv;
    size_t uv_size;               /* bytes readable at uv (ignored if uv NULL) */
    int uv_stride;                /* bytes per chroma row; 0 = stride */
    fpay_yuv_range range;         /* NV12/NV21 only */
} fpay_frame;

/* Converts a frame to 8-bit RGB. Every size, stride and buffer length is
 * checked before a byte is read (short buffer, zero size, odd size for NV12,
 * stride below the row, overflow: FPAY_IMAGE_INVALID; over the limits:
 * FPAY_LIMIT_EXCEEDED). limits may be NULL (defaults; max_bytes is not used
 * for raw frames). On success the caller frees out->pixels with
 * fpay_image_free. err (caller-owned, may be NULL) gets the reason. */
FPAY_API fpay_status fpay_frame_to_rgb(const fpay_frame *frame,
                                       const fpay_image_limits *limits,
                                       fpay_image *out, char *err,
                                       size_t err_len);

/* --------------------------------------------------------- configuration */

/* Preset thresholds for a kind of camera; every field stays configurable. */
typedef enum fpay_camera_profile {
    FPAY_CAMERA_DEFAULT = 0,  /* the values documented below */
    FPAY_CAMERA_KIOSK = 1,    /* fixed counter camera, face at arm's length:
                                 bigger faces, stricter pose and sharpness */
    FPAY_CAMERA_MOBILE = 2,   /* hand-held phone: looser pose, liveness on,
                                 laplacian gate lower (phone cameras smooth) */
} fpay_camera_profile;

/* Quality reasons (bit mask in fpay_quality.reasons). */
enum {
    FPAY_QUALITY_TOO_SMALL = 1u << 0,   /* inter-eye distance < min_eye_distance */
    FPAY_QUALITY_BLURRED = 1u << 1,     /* variance of Laplacian < min_sharpness */
    FPAY_QUALITY_TOO_DARK = 1u << 2,    /* mean luma < min_brightness */
    FPAY_QUALITY_TOO_BRIGHT = 1u << 3,  /* mean luma > max_brightness */
    FPAY_QUALITY_POSE = 1u << 4,        /* |yaw|,|pitch| or |roll| over limit */
    FPAY_QUALITY_CUT_BY_EDGE = 1u << 5, /* face box leaves the frame */
};

typedef struct fpay_pipeline_config {
    size_t struct_size;        /* sizeof(fpay_pipeline_config) */
    const char *models_dir;    /* folder with pnet/rnet/onet/MobileFaceNet/
                                  FaceAntiSpoofing .tflite; NULL = "models";
                                  borrowed during create */
    const char *backend;       /* as fpay_session_options.backend; borrowed */
    int threads;               /* per session; 0 = 1 */
    fpay_image_limits limits;  /* for decoding and raw frames */

    /* Detection (MTCNN.kt / FaceDetectionManager.kt values). */
    float min_face_ratio;      /* smallest face = ratio * image width: 0.2 */
    int min_face_px;           /* if > 0, overrides min_face_ratio; the
                                  pyramid never goes below 12 px */
    float pyramid_factor;      /* 0.709 */
    float pnet_threshold;      /* 0.6 */
    float rnet_threshold;      /* 0.7 */
    float onet_threshold;      /* 0.7 */

    /* Choice of the payer. */
    float centre_weight;       /* rank = area * (1 - centre_weight * d), d =
                                  distance of the box centre from the image
                                  centre / half the image diagonal: 0.5 */
    float ambiguity_ratio;     /* another face whose area is >= ratio * the
                                  payer's area makes the capture
                                  AMBIGUOUS_MULTIPLE_FACES: 0.5 */

    /* Quality gate (measured on the payer). */
    float min_eye_distance;    /* pixels between the eye landmarks: 28 */
    float min_sharpness;       /* variance of the 4-neighbour Laplacian of the
                                  aligned 112x112 luma: 40 */
    float min_brightness;      /* mean luma of the aligned crop: 40 */
    float max_brightness;      /* 215 */
    float max_yaw_deg;         /* 35 (estimated from the 5 landmarks) */
    float max_pitch_deg;       /* 30 */
    float max_roll_deg;        /* 30 */
    float edge_tolerance;      /* the box may leave the frame by this fraction
                                  of its size before CUT_BY_EDGE: 0.05 */

    /* Liveness (FaceAntiSpoofing.kt). Only ever blocks. */
    int liveness;              /* 1 = run it on the payer (default), 0 = off */
    float liveness_threshold;  /* score > threshold = spoof: 0.2 */
    int min_laplacian_count;   /* FaceAntiSpoofing.laplacian() count of
                                  Laplacian > 50 on the 256x256 grey crop below
                                  which the crop is "too blurry" for the
                                  liveness model: 50 (0 = gate off) */

    /* Embedding. */
    int embed;                 /* 1 = embed the payer (default) */
    int embed_rejected;        /* 1 = embed the best-ranked face even when the
                                  capture is refused (evaluation): 0 */
} fpay_pipeline_config;

/* Fills cfg with the values of a camera profile (documented above for
 * FPAY_CAMERA_DEFAULT; docs/pipeline.md lists the others). */
FPAY_API void fpay_pipeline_config_init(fpay_pipeline_config *cfg,
                                        fpay_camera_profile profile);

/* ---------------------------------------------------------------- results */

typedef enum fpay_face_result {
    FPAY_FACE_OK = 0,                       /* one payer, good quality, live */
    FPAY_FACE_NO_FACE = 1,
    FPAY_FACE_AMBIGUOUS_MULTIPLE_FACES = 2,
    FPAY_FACE_QUALITY_REJECTED = 3,         /* see quality.reasons */
    FPAY_FACE_SPOOF_SUSPECTED = 4,          /* liveness score over threshold */
    FPAY_FACE_LIVENESS_UNSURE = 5,          /* crop too blurry for the
                                               liveness model */
} fpay_face_result;

FPAY_API const char *fpay_face_result_str(fpay_face_result r);
/* Writes "too_small,blurred,..." (or "ok") into buf (caller-owned). */
FPAY_API void fpay_quality_reasons_str(unsigned reasons, char *buf,
                                       size_t len);

#define FPAY_MAX_FACES 32
#define FPAY_EMBED_DIM 192
#define FPAY_ALIGNED_SIDE 112

typedef struct fpay_face {
    float x1, y1, x2, y2;      /* box in image pixels, inclusive (MTCNN's
                                  final O-Net box, after regression) */
    float score;               /* O-Net face probability */
    float landmarks[10];       /* x,y of: left eye, right eye, nose, left and
                                  right mouth corner (image left/right) */
} fpay_face;

typedef struct fpay_quality {
    unsigned reasons;          /* FPAY_QUALITY_* bits; 0 = passed */
    float eye_distance;        /* px */
    float sharpness;           /* variance of Laplacian, aligned crop */
    float brightness;          /* mean luma 0..255, aligned crop */
    float yaw_deg, pitch_deg, roll_deg;
} fpay_quality;

typedef enum fpay_liveness_state {
    FPAY_LIVENESS_NOT_RUN = 0,   /* switched off, or an earlier stage refused */
    FPAY_LIVENESS_PASSED = 1,    /* did not block (this alone approves nothing) */
    FPAY_LIVENESS_SPOOF = 2,
    FPAY_LIVENESS_TOO_BLURRY = 3,
} fpay_liveness_state;

typedef struct fpay_liveness {
    fpay_liveness_state state;
    float score;               /* sum |clss_pred[i]| * leaf_mask[i] */
    int laplacian_count;       /* FaceAntiSpoofing.laplacian() */
} fpay_liveness;

typedef struct fpay_timings {  /* milliseconds, wall clock */
    double decode, detect, select, quality, align, liveness, embed, total;
} fpay_timings;

typedef struct fpay_capture {
    fpay_face_result result;
    int width, height;         /* of the image the boxes refer to */
    int face_count;            /* faces found (all of them) */
    int faces_stored;          /* min(face_count, FPAY_MAX_FACES): the largest */
    fpay_face faces[FPAY_MAX_FACES];   /* sorted by payer rank, best first */
    int payer;                 /* index into faces of the chosen face, or -1
                                  (NO_FACE; with AMBIGUOUS it is the best
                                  ranked face) */
    fpay_quality quality;      /* of faces[payer] */
    fpay_liveness liveness;
    int has_embedding;
    float embedding[FPAY_EMBED_DIM];   /* L2-normalised */
    float embedding_raw_norm;          /* L2 norm before normalising */
    char model_sha256[65];     /* MobileFaceNet fingerprint ("" if none) */
    uint8_t aligned[FPAY_ALIGNED_SIDE * FPAY_ALIGNED_SIDE * 3]; /* RGB crop
                                  of the payer (valid if payer >= 0) */
    fpay_timings timings;
} fpay_capture;

/* --------------------------------------------------------------- pipeline */

typedef struct fpay_pipeline fpay_pipeline;

/* Loads the models and creates one session each. cfg is copied (NULL =
 * FPAY_CAMERA_DEFAULT). The FaceAntiSpoofing model is loaded only when
 * cfg->liveness is set. On failure *out is NULL and err (caller-owned) says
 * why. */
FPAY_API fpay_status fpay_pipeline_create(const fpay_pipeline_config *cfg,
                                          fpay_pipeline **out, char *err,
                                          size_t err_len);
FPAY_API void fpay_pipeline_free(fpay_pipeline *p);

/* Message of the last failed call ("" if none); owned by p, valid until the
 * next call on it. */
FPAY_API const char *fpay_pipeline_errmsg(const fpay_pipeline *p);

/* The configuration in use (owned by p). */
FPAY_API const fpay_pipeline_config *fpay_pipeline_get_config(
    const fpay_pipeline *p);

/* Runs every stage on an RGB image (borrowed). out is caller-owned and fully
 * overwritten. Returns FPAY_OK whenever the stages ran, whatever the face
 * decision (see out->result). */
FPAY_API fpay_status fpay_pipeline_process_image(fpay_pipeline *p,
                                                 const fpay_image *img,
                                                 fpay_capture *out);
/* Same, from an encoded JPEG/PNG in memory (borrowed) or a file, decoded
 * with cfg.limits and EXIF orientation; timings.decode is filled in. */
FPAY_API fpay_status fpay_pipeline_process_encoded(fpay_pipeline *p,
                                                   const void *data,
                                                   size_t size,
                                                   fpay_capture *out);
FPAY_API fpay_status fpay_pipeline_process_file(fpay_pipeline *p,
                                                const char *path,
                                                fpay_capture *out);
/* Same, from a raw camera frame (borrowed); timings.decode is the
 * conversion. */
FPAY_API fpay_status fpay_pipeline_process_frame(fpay_pipeline *p,
                                                 const fpay_frame *frame,
                                                 fpay_capture *out);

/* Detection alone: every face of img, best payer rank first, up to max
 * (faces caller-owned, max >= 0); *count gets the number found (may exceed
 * max). */
FPAY_API fpay_status fpay_pipeline_detect(fpay_pipeline *p,
                                          const fpay_image *img,
                                          fpay_face *faces, int max,
                                          int *count);

/* Embeds n (>= 1) aligned 112x112 RGB crops in one batch: crops holds
 * n*112*112*3 bytes (borrowed), out (caller-owned) receives n*192
 * L2-normalised floats, raw_norms (may be NULL) n norms. */
FPAY_API fpay_status fpay_pipeline_embed_aligned(fpay_pipeline *p,
                                                 const uint8_t *crops, int n,
                                                 float *out, float *raw_norms);

/* Liveness of one face box of img (ignores cfg.liveness; the model is loaded
 * on first use if it was not). */
FPAY_API fpay_status fpay_pipeline_liveness(fpay_pipeline *p,
                                            const fpay_image *img,
                                            const fpay_face *face,
                                            fpay_liveness *out);

/* MobileFaceNet's sha256 (owned by p). */
FPAY_API const char *fpay_pipeline_model_sha256(const fpay_pipeline *p);

/* ------------------------------------------------------------ free helpers */

/* Warps img so that the 5 landmarks land on the ArcFace 112x112 template
 * (similarity transform, least squares / Umeyama; bilinear sampling; black
 * outside the image). out (caller-owned) holds 112*112*3 bytes. If m is not
 * NULL it gets the 2x3 matrix mapping template -> image coordinates. */
FPAY_API fpay_status fpay_face_align(const fpay_image *img,
                                     const float landmarks[10], uint8_t *out,
                                     float m[6]);

/* Cosine similarity of two L2-normalised embeddings of dim floats. */
FPAY_API float fpay_embedding_cosine(const float *a, const float *b, int dim);

#ifdef __cplusplus
}
#endif

#endif /* FACEPAY_PIPELINE_H */
