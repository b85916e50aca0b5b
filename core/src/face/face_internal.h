/*
 * face_internal.h - what the files of the face pipeline share (internal to
 * libfacepay). One stage per file: frame.c, mtcnn.c, select.c, quality.c,
 * align.c, liveness.c, embed.c, pipeline.c.
 */
#ifndef FACEPAY_FACE_INTERNAL_H
#define FACEPAY_FACE_INTERNAL_H

#include "facepay/pipeline.h"

#include <stddef.h>
#include <stdint.h>

/* graph.h's error helper, declared again so that this header stays small. */
void fpay_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Monotonic clock in milliseconds. */
double fpay_face_now_ms(void);

/* ------------------------------------------------------------ mtcnn.c */

typedef struct fpay_mtcnn_params {
    float min_face;            /* pixels, >= 12 */
    float factor;              /* pyramid step, 0 < factor < 1 */
    float pnet_threshold, rnet_threshold, onet_threshold;
} fpay_mtcnn_params;

/* MTCNN.detectFaces. *faces gets a malloc'd array (caller frees; NULL when
 * *count is 0). Sessions are reshaped as needed. */
fpay_status fpay_mtcnn_detect(fpay_session *pnet, fpay_session *rnet,
                              fpay_session *onet, const fpay_image *img,
                              const fpay_mtcnn_params *prm, fpay_face **faces,
                              int *count, char *err, size_t err_len);

/* Index of the output of s named name, or -1. */
int fpay_face_output_index(const fpay_session *s, const char *name);

/* ------------------------------------------------------------ select.c */

/* Sorts faces[0..n) by payer rank (largest, nearest the centre first) and
 * says whether a second face is close in size to the first. */
void fpay_select_rank(fpay_face *faces, int n, int img_w, int img_h,
                      float centre_weight);
int fpay_select_ambiguous(const fpay_face *faces, int n, float ratio);

/* ------------------------------------------------------------ align.c */

/* Crops the box [x0, x0+bw) x [y0, y0+bh) of img (pixels outside the image
 * are black) and resizes it to out_w x out_h with fpay_image_resize_bilinear
 * (half-pixel centres), as Android's createBitmap(..., filter=true) does.
 * out holds out_w*out_h*3 bytes. */
fpay_status fpay_crop_resize(const fpay_image *img, int x0, int y0, int bw,
                             int bh, int out_w, int out_h, uint8_t *out);

/* ------------------------------------------------------------ quality.c */

/* BT.601 luma of an RGB pixel, 0..255. */
static inline float fpay_luma(const uint8_t *p)
{
    return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
}

/* Variance of the 4-neighbour Laplacian of the luma of a w x h RGB image
 * (interior pixels). */
float fpay_laplacian_variance(const uint8_t *rgb, int w, int h);

/* Yaw, pitch, roll in degrees estimated from the 5 landmarks. */
void fpay_pose_from_landmarks(const float lm[10], float *yaw, float *pitch,
                              float *roll);

/* Measures the payer (aligned = its 112x112 crop) and sets q->reasons. */
void fpay_quality_measure(const fpay_face *f, const uint8_t *aligned,
                          int img_w, int img_h,
                          const fpay_pipeline_config *cfg, fpay_quality *q);

/* ------------------------------------------------------------ liveness.c */

/* FaceAntiSpoofing.kt on one face: the box made square and kept inside the
 * image (Box.toSquareShape/limitSquare), cropped, 256x256, RGB/255. */
fpay_status fpay_liveness_run(fpay_session *s, const fpay_image *img,
                              const fpay_face *face, float threshold,
                              int min_laplacian_count, fpay_liveness *out,
                              char *err, size_t err_len);

/* FaceAntiSpoofing.laplacian on a 256x256 RGB crop. */
int fpay_liveness_laplacian_count(const uint8_t *rgb256);

/* ------------------------------------------------------------ embed.c */

/* MobileFaceNet on n aligned crops; *batch tracks the session's batch. */
fpay_status fpay_embed_run(fpay_session *s, int *batch, const uint8_t *crops,
                           int n, float *out, float *raw_norms, char *err,
                           size_t err_len);

#endif
