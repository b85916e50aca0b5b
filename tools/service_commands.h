/* service_commands.h - the checkout commands of the facepay CLI (keygen,
 * enroll, verify, delete, unlock, calibrate, audit, terminal, rotate-key).
 * Private to tools/. */
#ifndef FACEPAY_SERVICE_COMMANDS_H
#define FACEPAY_SERVICE_COMMANDS_H

/* Usage lines of these commands, for facepay --help. */
extern const char *const fpay_service_usage;

/* 1 when cmd is one of these commands. */
int fpay_is_service_command(const char *cmd);

/* Runs command cmd with its arguments (argv after the command's name).
 * Returns the exit code: 0 done / APPROVE, 3 DECLINE, 2 usage error,
 * 1 any other failure. */
int fpay_cmd_service(const char *cmd, int argc, char **argv);

#endif
