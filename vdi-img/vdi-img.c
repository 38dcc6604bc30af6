/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img: a command-line tool on libvdi, like qemu-img for VDI
 * images.  This file picks the command, prints the usage and routes
 * libvdi's messages; each command lives in a file of its own.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

#define PROGRAM_NAME "vdi-img"

bool verbose;
unsigned error_count;

static const struct command *const commands[] = {
  &info_command,
  &check_command,
  &merge_command,
};
#define NR_COMMANDS (sizeof commands / sizeof commands[0])

static void
usage (void)
{
  size_t i;

  printf ("%s: inspect and change VirtualBox VDI images\n"
          "\n"
          "Usage:\n"
          "  %s [-v] COMMAND [OPTIONS] ...\n"
          "  %s --help\n"
          "  %s --version\n"
          "\n"
          "Commands:\n",
          PROGRAM_NAME, PROGRAM_NAME, PROGRAM_NAME, PROGRAM_NAME);
  for (i = 0; i < NR_COMMANDS; ++i)
    printf ("  %-8s %s\n", commands[i]->name, commands[i]->summary);
  printf ("\n"
          "Options:\n"
          "  -h, --help     Print this help and exit.\n"
          "  -V, --version  Print the version and exit.\n"
          "  -v, --verbose  Print libvdi's debug messages.\n"
          "\n"
          "'%s COMMAND --help' describes a command; the manual page\n"
          "vdi-img(1) describes them all.\n",
          PROGRAM_NAME);
}

/* A usage error before any command: the message and the hint. */
static void __attribute__ ((__noreturn__))
main_usage_error (const char *fs, ...)
{
  va_list args;

  if (fs) {
    fprintf (stderr, "%s: ", PROGRAM_NAME);
    va_start (args, fs);
    vfprintf (stderr, fs, args);
    va_end (args);
    fprintf (stderr, "\n");
  }
  fprintf (stderr, "Try '%s --help' for more information.\n", PROGRAM_NAME);
  exit (EXIT_FAILURE);
}

void
command_common_option (const struct command *cmd, int c)
{
  switch (c) {
  case 'h':
    printf ("Usage: %s %s\n"
            "\n"
            "%s\n"
            "\n"
            "%s",
            PROGRAM_NAME, cmd->synopsis, cmd->summary, cmd->help);
    exit (EXIT_SUCCESS);
  case 'v':
    verbose = true;
    break;
  default:
    command_usage_error (cmd, NULL);
  }
}

void
command_usage_error (const struct command *cmd, const char *fs, ...)
{
  va_list args;

  if (fs) {
    fprintf (stderr, "%s %s: ", PROGRAM_NAME, cmd->name);
    va_start (args, fs);
    vfprintf (stderr, fs, args);
    va_end (args);
    fprintf (stderr, "\n");
  }
  fprintf (stderr, "Try '%s %s --help' for more information.\n",
           PROGRAM_NAME, cmd->name);
  exit (EXIT_FAILURE);
}

void
option_list_add (struct option_list *l, const char *value)
{
  const char **values;

  values = realloc (l->values, (l->n + 1) * sizeof *values);
  if (values == NULL) {
    perror ("realloc");
    exit (EXIT_FAILURE);
  }
  l->values = values;
  l->values[l->n++] = value;
}

void
option_list_free (struct option_list *l)
{
  free (l->values);
  l->values = NULL;
  l->n = 0;
}

/* The progress line: is one on the screen, and what does it show (in
 * hundredths of a percent)?
 */
static bool progress_shown;
static int progress_shows = -1;

void
progress_update (double percent)
{
  const int hundredths =
    percent <= 0 ? 0 : percent >= 100 ? 10000 : (int) (percent * 100);

  /* Redraw, as qemu-img does, once it has moved by 1% (and at the
   * end), not for each block.
   */
  if (progress_shown && hundredths < progress_shows + 100 &&
      !(hundredths == 10000 && progress_shows != 10000))
    return;
  fprintf (stderr, "    (%d.%02d/100%%)\r", hundredths / 100, hundredths % 100);
  progress_shown = true;
  progress_shows = hundredths;
}

void
progress_end (void)
{
  if (progress_shown)
    fprintf (stderr, "\n");
  progress_shown = false;
  progress_shows = -1;
}

/* libvdi's messages already name the file and the problem.  Each
 * starts on a line of its own, after any progress line.
 */
static void
log_message (enum vdi_log_level level, const char *msg)
{
  if (level != VDI_LOG_DEBUG || verbose)
    progress_end ();
  switch (level) {
  case VDI_LOG_ERROR:
    error_count++;
    fprintf (stderr, "%s: %s\n", PROGRAM_NAME, msg);
    break;
  case VDI_LOG_WARNING:
    fprintf (stderr, "%s: warning: %s\n", PROGRAM_NAME, msg);
    break;
  case VDI_LOG_DEBUG:
    if (verbose)
      fprintf (stderr, "%s: debug: %s\n", PROGRAM_NAME, msg);
    break;
  }
}

int
main (int argc, char *argv[])
{
  /* "+": stop at the command, whose options are its own. */
  static const char short_options[] = "+hVv";
  static const struct option long_options[] = {
    { "help",    no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { "version", no_argument, NULL, 'V' },
    { NULL }
  };
  static char program_name[] = PROGRAM_NAME;
  const struct command *cmd = NULL;
  char *cmd_argv0;
  size_t i;
  int c, status;

  /* getopt's messages start with argv[0]; so do ours. */
  argv[0] = program_name;
  vdi_set_log_function (log_message);

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'h':
      usage ();
      exit (EXIT_SUCCESS);
    case 'V':
      printf ("%s %s\n", PROGRAM_NAME, PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    case 'v':
      verbose = true;
      break;
    default:
      main_usage_error (NULL);  /* getopt has printed the problem */
    }
  }
  if (optind >= argc)
    main_usage_error ("no command given");
  for (i = 0; i < NR_COMMANDS; ++i)
    if (strcmp (argv[optind], commands[i]->name) == 0)
      cmd = commands[i];
  if (cmd == NULL)
    main_usage_error ("unknown command '%s'", argv[optind]);

  /* The command parses its own arguments from a fresh getopt (optind
   * 0 makes glibc start over), and getopt's messages name it.
   */
  if (asprintf (&cmd_argv0, "%s %s", PROGRAM_NAME, cmd->name) == -1) {
    perror ("asprintf");
    exit (EXIT_FAILURE);
  }
  argv[optind] = cmd_argv0;
  argc -= optind;
  argv += optind;
  optind = 0;
  status = cmd->run (argc, argv);
  free (cmd_argv0);
  exit (status);
}
