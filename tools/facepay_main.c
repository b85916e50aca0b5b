/*
 * facepay - command-line front end of libfacepay.
 *
 *   facepay info MODEL
 *   facepay run [--batch N] [--shape D0,D1,...] [--backend B] MODEL IN.f32... OUT_PREFIX
 *   facepay detect|embed|compare|align (face_commands.c), eval (face_eval.c)
 *
 * Every failure prints one line "facepay: ..." on stderr and exits non-zero
 * (2 for usage errors, 1 for everything else).
 */
#include "cli_util.h"
#include "facepay/backend.h" /* registry listing: `facepay backends` */
#include "facepay/facepay.h"
#include "face_commands.h" /* detect, embed, compare, align, eval */
#include "selftest.h"      /* selftest */
#include "service_commands.h" /* keygen, enroll, verify, ... (checkout) */
#include "server/serve.h"   /* serve: the HTTP service */

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef FACEPAY_DEFAULT_MODELS_DIR
#define FACEPAY_DEFAULT_MODELS_DIR "models"
#endif

#define EXIT_USAGE 2

static const char *const usage_text =
    "usage: facepay COMMAND [OPTIONS] ARGS\n"
    "\n"
    "commands:\n"
    "  info MODEL              ops before/after optimisation, tensors, MACs,\n"
    "                          parameters, peak activation memory, fingerprint\n"
    "  run [--batch N] [--shape D0,D1,..] [--backend B] MODEL IN.f32... OUT_PREFIX\n"
    "                          run a model on raw little-endian float32 inputs;\n"
    "                          writes OUT_PREFIX.out<k>.f32 per output\n"
    "  backends                registered backends (version, probe, origin)\n"
    "                          and rejected plugins with the reason\n"
    "  selftest [MODEL...]     every backend against the reference kernels on\n"
    "                          the bundled models, PASS/FAIL per line\n"
    "  cpuinfo                 detected CPU features, the ISA FACEPAY_ISA or\n"
    "                          detection chooses, and the kernel per family\n"
    "  version                 version and build id\n"
    "  serve [OPTIONS]         the checkout service over HTTP (facepay serve --help)\n"
    "\n"
    "environment: FACEPAY_MODELS_DIR (default folder of the .tflite models),\n"
    "  FACEPAY_BACKEND_PATH (extra plugin folders), FACEPAY_DISABLE_<NAME>=1\n";

/* `facepay CMD --help` of the commands of this file; the face commands'
 * come from fpay_face_help(), the service commands parse --help themselves. */
static const struct {
    const char *cmd, *text;
} command_help[] = {
    {"info",
     "usage: facepay info MODEL\n"
     "\n"
     "Imports a TFLite model and prints its operators before and after the\n"
     "optimizer, tensor counts, parameters, multiply-accumulates at the\n"
     "declared input shape, the inputs and outputs, the peak activation\n"
     "memory of one run, and the file's sha256 fingerprint (compare it with\n"
     "tools/models.sha256).\n"},
    {"run",
     "usage: facepay run [--batch N] [--shape D0,D1,..] [--backend B]\n"
     "                   MODEL IN.f32... OUT_PREFIX\n"
     "\n"
     "Runs a model on raw little-endian float32 inputs, one file per graph\n"
     "input holding exactly its element count, and writes output k to\n"
     "OUT_PREFIX.out<k>.f32. Prints the backend and the run time.\n"
     "\n"
     "  --batch N           set dimension 0 of every input (1..65536)\n"
     "  --shape D0,D1,..    set the whole shape of input 0 (fully\n"
     "                      convolutional models such as P-Net)\n"
     "  --backend B         auto (default), cpu, or a plugin name\n"
     "  -h, --help          this text\n"},
    {"backends",
     "usage: facepay backends\n"
     "\n"
     "Lists the registered backends (name, version, probe result, where it\n"
     "was loaded from) and the plugins that were refused, with the reason.\n"
     "Plugins are searched in $FACEPAY_BACKEND_PATH, next to the program,\n"
     "in ../lib/facepay/backends and in the install folder;\n"
     "FACEPAY_DISABLE_<NAME>=1 skips one, FACEPAY_BACKEND picks \"auto\".\n"},
    {"cpuinfo",
     "usage: facepay cpuinfo\n"
     "\n"
     "Prints the CPU features detected (with the OS's register support),\n"
     "the ISAs supported, the one chosen (FACEPAY_ISA=ref|avx2|avx512|neon\n"
     "forces one) and the kernel used for each kernel family.\n"},
    {"version",
     "usage: facepay version\n"
     "\n"
     "Prints the library version and build id: git hash, compiler, build\n"
     "type, ISAs compiled in and the backend ABI version.\n"},
};

static const char *command_help_text(const char *cmd)
{
    for (size_t i = 0; i < sizeof command_help / sizeof command_help[0]; i++)
        if (!strcmp(cmd, command_help[i].cmd))
            return command_help[i].text;
    if (!strcmp(cmd, "selftest"))
        return fpay_selftest_help;
    return fpay_face_help(cmd);
}


static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int load_model(const char *path, unsigned flags, fpay_model **m)
{
    char err[320];
    fpay_status st = fpay_model_load_file(path, flags, m, err, sizeof err);
    if (st != FPAY_OK)
        return fpay_cli_die(1, "%s (%s)", err, fpay_status_str(st));
    return 0;
}

static int make_session(const fpay_model *m, const char *backend, fpay_session **s)
{
    fpay_session_options o;
    fpay_session_options_init(&o);
    if (backend)
        o.backend = backend;
    char err[320];
    fpay_status st = fpay_session_create(m, &o, s, err, sizeof err);
    if (st != FPAY_OK)
        return fpay_cli_die(1, "%s (%s)", err, fpay_status_str(st));
    return 0;
}

static void format_dims(const fpay_tensor_info *t, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "",
                                 (long long)t->dims[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 1)
        return fpay_cli_die(EXIT_USAGE, "info takes exactly one MODEL (see facepay --help)");
    fpay_model *raw = NULL, *opt = NULL;
    fpay_session *s = NULL;
    int rc = load_model(argv[0], FPAY_LOAD_NO_OPTIMIZE, &raw);
    if (!rc)
        rc = load_model(argv[0], FPAY_LOAD_DEFAULT, &opt);
    if (!rc)
        rc = make_session(opt, "cpu", &s);
    if (rc)
        goto out;
    fpay_model_stats rs = {.struct_size = sizeof rs}, os = {.struct_size = sizeof os};
    fpay_model_stats_get(raw, &rs);
    fpay_model_stats_get(opt, &os);
    char ops[2048];
    printf("model:       %s\n", argv[0]);
    printf("sha256:      %s\n", os.sha256);
    fpay_model_imported_ops(raw, ops, sizeof ops);
    printf("imported:    %d nodes: %s\n", rs.imported_nodes, ops);
    fpay_model_ops(opt, ops, sizeof ops);
    printf("optimized:   %d nodes: %s\n", os.nodes, ops);
    printf("tensors:     %d imported, %d after optimization\n", rs.tensors, os.tensors);
    printf("parameters:  %lld\n", (long long)os.parameters);
    printf("MACs:        %lld (%.1f M) at the declared input shape\n",
           (long long)os.macs, (double)os.macs / 1e6);
    for (int i = 0; i < fpay_session_input_count(s); i++) {
        fpay_tensor_info t;
        char dims[128];
        fpay_session_input_info(s, i, &t);
        format_dims(&t, dims, sizeof dims);
        printf("input %d:     '%s' %s %s\n", i, t.name, fpay_dtype_str(t.dtype), dims);
    }
    for (int i = 0; i < fpay_session_output_count(s); i++) {
        fpay_tensor_info t;
        char dims[128];
        fpay_session_output_info(s, i, &t);
        format_dims(&t, dims, sizeof dims);
        printf("output %d:    '%s' %s %s\n", i, t.name, fpay_dtype_str(t.dtype), dims);
    }
    printf("peak activation memory: %zu bytes (%.2f MiB) at the declared shape\n",
           fpay_session_peak_activation_bytes(s),
           (double)fpay_session_peak_activation_bytes(s) / (1024.0 * 1024.0));
out:
    fpay_session_free(s);
    fpay_model_free(opt);
    fpay_model_free(raw);
    return rc;
}

/* Reads exactly `count` floats from path; anything else is an error. */
static int read_f32(const char *path, size_t count, float **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fpay_cli_die(1, "%s: %s", path, strerror(errno));
    float *buf = malloc(count * sizeof(float) + 1);
    if (!buf) {
        fclose(f);
        return fpay_cli_die(1, "%s: out of memory", path);
    }
    size_t got = fread(buf, sizeof(float), count, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != count || extra != EOF) {
        free(buf);
        return fpay_cli_die(1, "%s: expected exactly %zu float32 values (%zu bytes) for this input",
                   path, count, count * sizeof(float));
    }
    *out = buf;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static int parse_shape(const char *s, int *rank, int64_t *dims)
{
    *rank = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (errno || end == p || d < 1 || d > (1 << 24) || *rank == FPAY_MAX_RANK)
            return -1;
        dims[(*rank)++] = d;
        if (*end == ',' || *end == 'x')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return *rank ? 0 : -1;
}

static int cmd_run(int argc, char **argv)
{
    long batch = 0;
    int shape_rank = 0;
    int64_t shape[FPAY_MAX_RANK];
    const char *backend = NULL;
    int i = 0;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 65536, &batch))
                return fpay_cli_die(EXIT_USAGE, "--batch wants an integer 1..65536, got '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            if (parse_shape(argv[++i], &shape_rank, shape))
                return fpay_cli_die(EXIT_USAGE, "--shape wants dims like 1,75,75,3, got '%s'", argv[i]);
        } else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            backend = argv[++i];
        } else {
            return fpay_cli_die(EXIT_USAGE, "run: unknown or incomplete option '%s'", argv[i]);
        }
    }
    argc -= i;
    argv += i;
    if (argc < 3)
        return fpay_cli_die(EXIT_USAGE, "run needs MODEL IN.f32... OUT_PREFIX (see facepay --help)");
    fpay_model *m = NULL;
    fpay_session *s = NULL;
    float **inputs = NULL;
    int n_in = 0;
    int rc = load_model(argv[0], FPAY_LOAD_DEFAULT, &m);
    if (!rc)
        rc = make_session(m, backend, &s);
    if (rc)
        goto out;
    n_in = fpay_session_input_count(s);
    if (argc - 2 != n_in) {
        rc = fpay_cli_die(EXIT_USAGE, "%s has %d inputs, %d input files given", argv[0], n_in, argc - 2);
        goto out;
    }
    fpay_status st = FPAY_OK;
    if (shape_rank)
        st = fpay_session_set_input_shape(s, 0, shape_rank, shape);
    if (st == FPAY_OK && batch)
        st = fpay_session_set_batch(s, (int)batch);
    if (st != FPAY_OK) {
        rc = fpay_cli_die(1, "%s", fpay_session_errmsg(s));
        goto out;
    }
    inputs = calloc((size_t)n_in, sizeof(float *));
    if (!inputs) {
        rc = fpay_cli_die(1, "out of memory");
        goto out;
    }
    for (int k = 0; k < n_in && !rc; k++) {
        fpay_tensor_info t;
        fpay_session_input_info(s, k, &t);
        rc = read_f32(argv[1 + k], t.count, &inputs[k]);
        if (!rc && fpay_session_set_input(s, k, inputs[k], t.count) != FPAY_OK)
            rc = fpay_cli_die(1, "%s", fpay_session_errmsg(s));
    }
    if (rc)
        goto out;
    double t0 = now_ms();
    if (fpay_session_run(s) != FPAY_OK) {
        rc = fpay_cli_die(1, "%s", fpay_session_errmsg(s));
        goto out;
    }
    double t1 = now_ms();
    const char *prefix = argv[argc - 1];
    for (int k = 0; k < fpay_session_output_count(s) && !rc; k++) {
        const float *data;
        size_t count;
        fpay_tensor_info t;
        char path[4096], dims[128];
        fpay_session_output_info(s, k, &t);
        format_dims(&t, dims, sizeof dims);
        if (fpay_session_output(s, k, &data, &count) != FPAY_OK) {
            rc = fpay_cli_die(1, "output %d is not float32", k);
            break;
        }
        snprintf(path, sizeof path, "%s.out%d.f32", prefix, k);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, sizeof(float), count, f) != count) {
            rc = fpay_cli_die(1, "%s: %s", path, strerror(errno));
            if (f)
                fclose(f);
            break;
        }
        if (fclose(f) != 0) {
            rc = fpay_cli_die(1, "%s: %s", path, strerror(errno));
            break;
        }
        printf("%s: '%s' %s -> %s\n", fpay_session_backend(s), t.name, dims, path);
    }
    if (!rc)
        printf("run: %.3f ms\n", t1 - t0);
out:
    if (inputs)
        for (int k = 0; k < n_in; k++)
            free(inputs[k]);
    free(inputs);
    fpay_session_free(s);
    fpay_model_free(m);
    return rc;
}


/* `facepay backends`: what the registry holds after loading plugins, and
 * which plugins it refused and why (docs/backends.md). */
static int cmd_backends(int argc, char **argv)
{
    (void)argv;
    if (argc != 0)
        return fpay_cli_die(EXIT_USAGE, "backends takes no arguments");
    int n = fpay_backend_count();
    printf("registered backends (%d; \"auto\": $FACEPAY_BACKEND, else the last "
           "accelerator, else cpu):\n", n);
    for (int i = 0; i < n; i++) {
        const fpay_backend_iface *b = fpay_backend_get(i);
        char why[160] = "";
        fpay_status st = b->probe ? b->probe(why, sizeof why) : FPAY_OK;
        printf("  %-10s %-24s probe: %-4s %s%s\n", b->name, b->version,
               st == FPAY_OK ? "ok" : "FAIL", fpay_backend_origin(i),
               (b->caps & FPAY_BACKEND_CAP_ACCELERATOR) ? " [accelerator]" : "");
        if (st != FPAY_OK)
            printf("             %s\n", why);
    }
    int r = fpay_backend_rejected_count();
    printf("rejected plugins (%d):\n", r);
    for (int i = 0; i < r; i++) {
        const char *path = "", *reason = "";
        fpay_backend_rejected(i, &path, &reason);
        printf("  %s\n      %s\n", path, reason);
    }
    return 0;
}

/* `facepay cpuinfo`: what detection found and which kernel each family
 * uses on the chosen ISA ("reference" where none applies), as the library
 * reports it. */
static int cmd_cpuinfo(int argc, char **argv)
{
    (void)argv;
    if (argc != 0)
        return fpay_cli_die(EXIT_USAGE, "cpuinfo takes no arguments");
    char report[4096];
    fpay_status st = fpay_cpu_report(report, sizeof report);
    fputs(report, stdout);
    if (st != FPAY_OK)
        return fpay_cli_die(1, "cpuinfo: %s", fpay_status_str(st));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        fprintf(argc < 2 ? stderr : stdout, "\nface pipeline commands:\n%s", fpay_face_usage);
        fprintf(argc < 2 ? stderr : stdout, "\ncheckout commands:\n%s", fpay_service_usage);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    /* `facepay CMD ... --help`: that command's help. Commands without a
     * text here (the service's) see --help themselves. */
    const char *help = command_help_text(argv[1]);
    for (int i = 2; help && i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(help, stdout);
            return 0;
        }
    const char *cmd = argv[1];
    if (fpay_is_service_command(cmd))
        return fpay_cmd_service(cmd, argc - 2, argv + 2);
    if (!strcmp(cmd, "serve"))
        return fpay_cmd_serve(argc - 2, argv + 2);
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 2, argv + 2);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "embed"))
        return fpay_cmd_embed(argc - 2, argv + 2);
    if (!strcmp(cmd, "detect"))
        return fpay_cmd_detect(argc - 2, argv + 2);
    if (!strcmp(cmd, "compare"))
        return fpay_cmd_compare(argc - 2, argv + 2);
    if (!strcmp(cmd, "align"))
        return fpay_cmd_align(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval"))
        return fpay_cmd_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "backends"))
        return cmd_backends(argc - 2, argv + 2);
    if (!strcmp(cmd, "selftest"))
        return fpay_cmd_selftest(argc - 2, argv + 2);
    if (!strcmp(cmd, "cpuinfo"))
        return cmd_cpuinfo(argc - 2, argv + 2);
    if (!strcmp(cmd, "version")) {
        printf("facepay %s (%s)\n", fpay_version(), fpay_build_id());
        return 0;
    }
    return fpay_cli_die(EXIT_USAGE, "unknown command '%s' (see facepay --help)", cmd);
}
