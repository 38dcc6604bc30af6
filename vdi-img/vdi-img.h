/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img: what the commands share. */

#ifndef VDI_IMG_H
#define VDI_IMG_H

#include <stdbool.h>
#include <stddef.h>

#include "libvdi.h"

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

/* The name every message starts with. */
#define PROGRAM_NAME "vdi-img"

/* cli.c */

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
/* A usage error: print "vdi-img NAME: message" ("vdi-img: message"
 * if cmd is NULL; nothing if fs is NULL, when getopt has already said
 * what is wrong) and the hint to run --help on stderr, exit 1.
 */
extern void usage_error (const struct command *cmd, const char *fs, ...)
  __attribute__ ((__noreturn__, __format__ (__printf__, 2, 3)));

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
/* A vdi_progress_function that draws that line. */
extern void progress_of (void *opaque, uint64_t done, uint64_t total);
extern void progress_end (void);

/* libvdi's log function: "vdi-img: message" on stderr for errors
 * (counted in error_count) and warnings; debug only when verbose.
 */
extern void cli_log_message (enum vdi_log_level level, const char *msg);

/* info.c */
extern const struct command info_command;

/* check.c */
extern const struct command check_command;

/* compact.c */
extern const struct command compact_command;

/* merge.c */
extern const struct command merge_command;

/* resize.c */
extern const struct command resize_command;

/* snapshot.c */
extern const struct command snapshot_command;

#endif /* VDI_IMG_H */
