/*
 * quality.c - the quality gate: size (inter-eye distance), sharpness
 * (variance of the Laplacian of the aligned crop's luma), exposure (mean luma
 * of the aligned crop), head pose from the 5 landmarks, and faces cut by the
 * frame edge.
 *
 * Pose from 5 points is an estimate (about +-10 degrees), enough to refuse a
 * head turned too far:
 *   roll  = angle of the eye line;
 *   yaw   = atan(r / 0.55), r = horizontal offset of the nose from the face's
 *           midline (between the eye and mouth midpoints) over the inter-eye
 *           distance, 0.55 being the nose tip's depth in front of the eyes in
 *           inter-eye units (anthropometric average);
 *   pitch = atan((t - 0.60) / 0.48), t = the nose's position between the
 *           eye line (0) and the mouth line (1), 0.60 its value for a frontal
 *           face with MTCNN's landmarks (its mouth corners sit higher than
 *           the ArcFace template's, where t = 0.494), 0.48 the nose depth
 *           over the eye-to-mouth distance.
 * All measured in the frame rotated by -roll about the eye midpoint.
 */
#include "face_internal.h"

#include <math.h>

#define RAD2DEG 57.29577951308232f

float fpay_laplacian_variance(const uint8_t *rgb, int w, int h)
{
    if (w < 3 || h < 3)
        return 0.0f;
    double sum = 0, sum2 = 0;
    int64_t n = 0;
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            const size_t row = (size_t)w * 3;
            float lap = fpay_luma(p - 3) + fpay_luma(p + 3) + fpay_luma(p - row) +
                        fpay_luma(p + row) - 4.0f * fpay_luma(p);
            sum += lap;
            sum2 += (double)lap * lap;
            n++;
        }
    double mean = sum / (double)n;
    return (float)(sum2 / (double)n - mean * mean);
}

void fpay_pose_from_landmarks(const float lm[10], float *yaw, float *pitch, float *roll)
{
    const float ex = 0.5f * (lm[0] + lm[2]), ey = 0.5f * (lm[1] + lm[3]);
    const float r = atan2f(lm[3] - lm[1], lm[2] - lm[0]);
    const float c = cosf(-r), s = sinf(-r);
    float p[10];
    for (int i = 0; i < 5; i++) {
        float dx = lm[2 * i] - ex, dy = lm[2 * i + 1] - ey;
        p[2 * i] = c * dx - s * dy;
        p[2 * i + 1] = s * dx + c * dy;
    }
    const float eye_d = p[2] - p[0];
    const float mx = 0.5f * (p[6] + p[8]), my = 0.5f * (p[7] + p[9]);
    *roll = r * RAD2DEG;
    if (!(eye_d > 1e-3f) || !(my > 1e-3f)) {
        /* Degenerate (eyes swapped or mouth above the eyes): far off frontal. */
        *yaw = 90.0f;
        *pitch = 90.0f;
        return;
    }
    const float midline = 0.5f * mx; /* eye midpoint is at x = 0 */
    *yaw = atanf(((p[4] - midline) / eye_d) / 0.55f) * RAD2DEG;
    *pitch = atanf((p[5] / my - 0.60f) / 0.48f) * RAD2DEG;
}

void fpay_quality_measure(const fpay_face *f, const uint8_t *aligned, int img_w, int img_h,
                          const fpay_pipeline_config *cfg, fpay_quality *q)
{
    const int S = FPAY_ALIGNED_SIDE;
    q->reasons = 0;
    q->eye_distance = hypotf(f->landmarks[2] - f->landmarks[0], f->landmarks[3] - f->landmarks[1]);
    q->sharpness = fpay_laplacian_variance(aligned, S, S);
    double sum = 0;
    for (int i = 0; i < S * S; i++)
        sum += fpay_luma(aligned + 3 * i);
    q->brightness = (float)(sum / (S * S));
    fpay_pose_from_landmarks(f->landmarks, &q->yaw_deg, &q->pitch_deg, &q->roll_deg);

    if (!(q->eye_distance >= cfg->min_eye_distance))
        q->reasons |= FPAY_QUALITY_TOO_SMALL;
    if (!(q->sharpness >= cfg->min_sharpness))
        q->reasons |= FPAY_QUALITY_BLURRED;
    if (q->brightness < cfg->min_brightness)
        q->reasons |= FPAY_QUALITY_TOO_DARK;
    if (q->brightness > cfg->max_brightness)
        q->reasons |= FPAY_QUALITY_TOO_BRIGHT;
    if (!(fabsf(q->yaw_deg) <= cfg->max_yaw_deg) || !(fabsf(q->pitch_deg) <= cfg->max_pitch_deg) ||
        !(fabsf(q->roll_deg) <= cfg->max_roll_deg))
        q->reasons |= FPAY_QUALITY_POSE;
    const float w = f->x2 - f->x1 + 1.0f, h = f->y2 - f->y1 + 1.0f;
    const float tx = cfg->edge_tolerance * w, ty = cfg->edge_tolerance * h;
    if (f->x1 < -tx || f->y1 < -ty || f->x2 > (float)(img_w - 1) + tx ||
        f->y2 > (float)(img_h - 1) + ty)
        q->reasons |= FPAY_QUALITY_CUT_BY_EDGE;
    for (int i = 0; i < 5; i++)
        if (f->landmarks[2 * i] < 0 || f->landmarks[2 * i + 1] < 0 ||
            f->landmarks[2 * i] > (float)(img_w - 1) || f->landmarks[2 * i + 1] > (float)(img_h - 1))
            q->reasons |= FPAY_QUALITY_CUT_BY_EDGE;
}
