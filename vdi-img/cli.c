/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the commands of vdi-img share: their common options and usage
 * errors, repeatable options, the progress line, and the printing of
 * libvdi's messages.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>

#include "libvdi.h"

#include "vdi-img.h"

bool verbose;
unsigned error_count;

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
    usage_error (cmd, NULL);
  }
}

void
usage_error (const struct command *cmd, const char *fs, ...)
{
  const char *space = cmd ? " " : "";
  const char *name = cmd ? cmd->name : "";
  va_list args;

  if (fs) {
    fprintf (stderr, "%s%s%s: ", PROGRAM_NAME, space, name);
    va_start (args, fs);
    vfprintf (stderr, fs, args);
    va_end (args);
    fprintf (stderr, "\n");
  }
  fprintf (stderr, "Try '%s%s%s --help' for more information.\n",
           PROGRAM_NAME, space, name);
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
progress_of (void *opaque, uint64_t done, uint64_t total)
{
  progress_update (total > 0 ? 100.0 * done / total : 100.0);
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
void
cli_log_message (enum vdi_log_level level, const char *msg)
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
