/* face_commands.h - the face pipeline's commands of the facepay CLI. */
#ifndef FACEPAY_FACE_COMMANDS_H
#define FACEPAY_FACE_COMMANDS_H

/* Usage lines of these commands, for facepay --help. */
extern const char *const fpay_face_usage;

/* The --help text of detect, embed, compare, align or eval; NULL for any other
 * command. */
const char *fpay_face_help(const char *cmd);

/* Each returns the process exit code (0, 1 failure, 2 usage); argv holds
 * the command's arguments after its name. */
int fpay_cmd_detect(int argc, char **argv);
int fpay_cmd_embed(int argc, char **argv);
int fpay_cmd_compare(int argc, char **argv);
int fpay_cmd_align(int argc, char **argv);
int fpay_cmd_eval(int argc, char **argv);

#endif
