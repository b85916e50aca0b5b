/*
 * bench_track.c - `facepay-bench track [--repo DIR] [--history FILE]
 *                  [--suites models,checkout] [--last N] [REV...]
 *                  [-- SUITE-OPTION...]`
 *
 * For each revision (or each of the last N commits of HEAD, oldest first):
 * tools/bench_track.sh builds it in a temporary `git worktree` of the
 * repository and records the chosen suites with that commit's own
 * facepay-bench, so the latency per commit can be rebuilt after the fact.
 * The script is the one of this build's source tree (FPAY_BENCH_TRACK_SCRIPT,
 * or --script PATH): old commits do not have it.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FPAY_BENCH_TRACK_SCRIPT
#define FPAY_BENCH_TRACK_SCRIPT "tools/bench_track.sh"
#endif

static int run_script(const char *const *argv)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execv("/bin/bash", (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int fpay_bench_track(int argc, char **argv)
{
    const char *repo = ".", *history = getenv("FPAY_BENCH_HISTORY");
    const char *suites = "models,checkout", *script = FPAY_BENCH_TRACK_SCRIPT;
    if (!history)
        history = "bench-history.jsonl";
    long last = 0;
    const char *revs[256];
    int nrev = 0, i = 0;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--repo") && i + 1 < argc)
            repo = argv[++i];
        else if (!strcmp(argv[i], "--history") && i + 1 < argc)
            history = argv[++i];
        else if (!strcmp(argv[i], "--suites") && i + 1 < argc)
            suites = argv[++i];
        else if (!strcmp(argv[i], "--script") && i + 1 < argc)
            script = argv[++i];
        else if (!strcmp(argv[i], "--last") && i + 1 < argc)
            last = atol(argv[++i]);
        else if (argv[i][0] != '-' && nrev < 256)
            revs[nrev++] = argv[i];
        else {
            nrev = -1;
            break;
        }
    }
    if (nrev < 0 || (nrev == 0 && last <= 0) || last > 200) {
        fprintf(stderr,
                "usage: facepay-bench track [--repo DIR] [--history FILE] [--suites LIST] "
                "[--last N] [--script PATH] [REV...] [-- SUITE-OPTION...]\n"
                "  builds each commit in a temporary git worktree of DIR and records it\n");
        return 2;
    }
    /* The history path must survive the script's cd into the worktree. */
    char hist_abs[4096];
    if (history[0] != '/') {
        char cwd[3000];
        if (!getcwd(cwd, sizeof cwd))
            return 1;
        snprintf(hist_abs, sizeof hist_abs, "%s/%s", cwd, history);
        history = hist_abs;
    }
    /* --last N: the commits of HEAD, oldest first. */
    char *listed = NULL;
    if (last > 0) {
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "git -C '%s' rev-list --reverse --max-count=%ld HEAD", repo,
                 last);
        FILE *p = popen(cmd, "r");
        size_t cap = 0;
        if (!p || getdelim(&listed, &cap, '\0', p) < 0) {
            fprintf(stderr, "facepay-bench track: git rev-list failed in %s\n", repo);
            if (p)
                pclose(p);
            free(listed);
            return 1;
        }
        pclose(p);
        for (char *t = strtok(listed, "\n"); t && nrev < 256; t = strtok(NULL, "\n"))
            revs[nrev++] = t;
    }
    int failed = 0;
    for (int r = 0; r < nrev; r++) {
        const char *sargv[96] = {"bash", script, repo, revs[r], history, suites,
                                 fpay_bench_self_path()};
        int n = 7;
        for (int k = i + 1; k < argc && n < 94; k++)
            sargv[n++] = argv[k];
        sargv[n] = NULL;
        int rc = run_script(sargv);
        if (rc != 0) {
            fprintf(stderr, "facepay-bench track: %s failed (exit %d)\n", revs[r], rc);
            failed++;
        }
    }
    free(listed);
    printf("track: %d of %d commit(s) recorded into %s\n", nrev - failed, nrev, history);
    return failed ? 1 : 0;
}
