/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img: what the commands share. */

#ifndef VDI_IMG_H
#define VDI_IMG_H

#include <stdbool.h>
#include <stddef.h>

/* One command: "vdi-img NAME ...". */
struct command {
  const char *name;
  const char *synopsis;         /* "NAME [OPTIONS] IMAGE" */
  const char *summary;          /* one line for vdi-img --help */
  const char *help;             /* the options, for vdi-img NAME --help */
  /* Parse the command's arguments (argv[0] is "vdi-img NAME") and run
   * it.  Returns the exit status.
   */
  int (*run) (int argc, char *argv[]);
};

/* vdi-img.c */

/* -v, --verbose: print libvdi's debug messages. */
extern bool verbose;
/* How many errors libvdi has reported so far. */
extern unsigned error_count;

/* The options every command takes, for the default case of its
 * getopt_long switch: -h (--help) prints the command's usage and
 * exits, -v (--verbose) sets verbose; anything else is an option
 * getopt has already complained about, a usage error.
 */
extern void command_common_option (const struct command *cmd, int c)
  __attribute__ ((__nonnull__ (1)));
/* A usage error: print "vdi-img NAME: message" (unless fs is NULL,
 * when getopt has already said what is wrong) and the hint to run
 * --help on stderr, exit 1.
 */
extern void command_usage_error (const struct command *cmd,
                                 const char *fs, ...)
  __attribute__ ((__noreturn__, __nonnull__ (1),
                  __format__ (__printf__, 2, 3)));

/* The values of a repeatable option (--parent-dir, --registry), in
 * the order given.
 */
struct option_list {
  const char **values;
  size_t n;
};
extern void option_list_add (struct option_list *l, const char *value)
  __attribute__ ((__nonnull__ (1, 2)));
extern void option_list_free (struct option_list *l)
  __attribute__ ((__nonnull__ (1)));

/* A progress line on stderr as qemu-img -p draws it, "    (12.34/100%)",
 * redrawn in place.  progress_end finishes it with a newline; a message
 * from libvdi ends it too, so that the message starts on a line of its
 * own.
 */
extern void progress_update (double percent);
extern void progress_end (void);

/* info.c */
extern const struct command info_command;

/* check.c */
extern const struct command check_command;

/* merge.c */
extern const struct command merge_command;

#endif /* VDI_IMG_H */
