/*
 * serve.h - `facepay serve`, the HTTP front end of the checkout service
 * (facepay/service.h). The command's only entry point for facepay_main.c;
 * the pieces live in server_internal.h.
 */
#ifndef FACEPAY_SERVE_H
#define FACEPAY_SERVE_H

/* argv[0] is the first argument after "serve". Returns the exit code: 0
 * after a graceful shutdown (SIGINT/SIGTERM), 2 for a usage error, 1 when
 * the service or the listener could not start. */
int fpay_cmd_serve(int argc, char **argv);

#endif
