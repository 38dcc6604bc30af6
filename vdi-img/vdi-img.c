/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img: a command-line tool on libvdi, like qemu-img for VDI
 * images.  This file picks the command and prints the usage; each
 * command lives in a file of its own, and what they share in cli.c.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

static const struct command *const commands[] = {
  &info_command,
  &check_command,
  &compact_command,
  &merge_command,
  &resize_command,
  &snapshot_command,
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
  vdi_set_log_function (cli_log_message);

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
      usage_error (NULL, NULL);  /* getopt has printed the problem */
    }
  }
  if (optind >= argc)
    usage_error (NULL, "no command given");
  for (i = 0; i < NR_COMMANDS; ++i)
    if (strcmp (argv[optind], commands[i]->name) == 0)
      cmd = commands[i];
  if (cmd == NULL)
    usage_error (NULL, "unknown command '%s'", argv[optind]);

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
