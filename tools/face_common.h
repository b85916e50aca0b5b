/*
 * face_common.h - what the face commands of the facepay CLI share between
 * face_commands.c (detect, embed, compare, option parsing) and face_eval.c
 * (eval). Private to tools/.
 */
#ifndef FACEPAY_FACE_COMMON_H
#define FACEPAY_FACE_COMMON_H

#include "facepay/pipeline.h"

#define EXIT_USAGE 2

/* The parsed command line of one face command (see fpay_face_usage). */
typedef struct opts {
    fpay_pipeline_config cfg;
    char models_dir[4096];
    const char *backend;
    int workers;
    const char *annotate, *model, *pairs, *root, *roc;
    int has_threshold;         /* --threshold T given (eval, compare) */
    float threshold;           /* eval: also report accuracy at this cosine;
                                  compare: the verdict's threshold */
    int whole;
    /* eval */
    const char *dump;          /* --dump FILE: one embedding per image */
    int enroll[8];             /* --enroll K[,K...]: multi-capture protocol */
    int nenroll;
    int flip;                  /* --flip: average with the mirrored crop */
    double fmr_extra;          /* --fmr F: one more FMR to report (0 = none) */
    const char *args[4];
    int nargs;
} opts;

/* Parses a face command's options and its want_args positional arguments
 * into o (cfg from the profile, models_dir from --models/--model,
 * $FACEPAY_MODELS_DIR or the built-in default). Returns 0, or the exit code
 * after printing the problem. */
int fpay_face_parse_opts(int argc, char **argv, opts *o, int want_args, const char *cmd);

#endif
