/*
 * status.h - the one-line error message that every fallible call of the
 * library writes into its caller's buffer (status.c). Its own header so
 * that code outside the graph IR (the service, the face pipeline) can
 * report errors without including the IR.
 */
#ifndef FACEPAY_STATUS_H
#define FACEPAY_STATUS_H

#include <stddef.h>
#include <stdio.h>

/* Writes the message into err (err_len bytes, NUL-terminated, cut if
 * longer); err may be NULL. */
void fpay_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Opens path for reading only when it is a regular file: a FIFO without a
 * writer, a device or a directory would block or never end. The open does
 * not block (O_NONBLOCK). Returns 0 and *out, or an errno value, or -1 for
 * "not a regular file". Also used by the command-line tools (cli_util.h). */
int fpay_open_regular(const char *path, FILE **out);

#endif
