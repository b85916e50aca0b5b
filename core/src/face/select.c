/*
 * select.c - choosing the payer among the detected faces.
 *
 * Rank = box area * (1 - centre_weight * d), d = distance of the box centre
 * from the image centre divided by half the image diagonal (0 at the centre,
 * 1 in a corner): the largest face wins, and between faces of similar size
 * the one nearer the centre. The capture is ambiguous when another face's
 * box area reaches ambiguity_ratio times the payer's: the engine must not
 * guess who pays.
 */
#include "face_internal.h"

#include <math.h>
#include <stdlib.h>

static float box_area(const fpay_face *f)
{
    float w = f->x2 - f->x1 + 1.0f, h = f->y2 - f->y1 + 1.0f;
    return w > 0 && h > 0 ? w * h : 0.0f;
}

static float rank_of(const fpay_face *f, int img_w, int img_h, float centre_weight)
{
    float cx = 0.5f * (f->x1 + f->x2), cy = 0.5f * (f->y1 + f->y2);
    float dx = cx - 0.5f * (float)(img_w - 1), dy = cy - 0.5f * (float)(img_h - 1);
    float half_diag = 0.5f * sqrtf((float)img_w * (float)img_w + (float)img_h * (float)img_h);
    float d = half_diag > 0 ? sqrtf(dx * dx + dy * dy) / half_diag : 0.0f;
    if (d > 1.0f)
        d = 1.0f;
    return box_area(f) * (1.0f - centre_weight * d);
}

void fpay_select_rank(fpay_face *faces, int n, int img_w, int img_h, float centre_weight)
{
    /* Insertion sort, stable: n is small (tens). */
    for (int i = 1; i < n; i++) {
        fpay_face key = faces[i];
        float rk = rank_of(&key, img_w, img_h, centre_weight);
        int j = i - 1;
        while (j >= 0 && rank_of(&faces[j], img_w, img_h, centre_weight) < rk) {
            faces[j + 1] = faces[j];
            j--;
        }
        faces[j + 1] = key;
    }
}

int fpay_select_ambiguous(const fpay_face *faces, int n, float ratio)
{
    if (n < 2)
        return 0;
    float a0 = box_area(&faces[0]);
    for (int i = 1; i < n; i++)
        if (box_area(&faces[i]) >= ratio * a0)
            return 1;
    return 0;
}
