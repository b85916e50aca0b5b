/* selftest.h - `facepay selftest` (selftest.c). */
#ifndef FACEPAY_SELFTEST_H
#define FACEPAY_SELFTEST_H

/* Its --help text. */
extern const char *const fpay_selftest_help;

/* Returns the exit code: 0 every backend passed on every model, 1 a
 * failure, 2 usage. argv holds the arguments after "selftest". */
int fpay_cmd_selftest(int argc, char **argv);

#endif
