/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img compact: give back the space of blocks that hold only
 * zeros.  The work is libvdi's (vdi_compact); this is the command
 * line around it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

static int
compact_run (int argc, char *argv[])
{
  static const char short_options[] = "hpv";
  static const struct option long_options[] = {
    { "help",     no_argument, NULL, 'h' },
    { "progress", no_argument, NULL, 'p' },
    { "verbose",  no_argument, NULL, 'v' },
    { NULL }
  };
  bool progress = false;
  int c, r;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'p':
      progress = true;
      break;
    default:
      command_common_option (&compact_command, c);
    }
  }
  if (optind != argc - 1)
    usage_error (&compact_command, "expected one IMAGE, got %d",
                 argc - optind);

  if (progress)
    progress_update (0);
  r = vdi_compact (argv[optind], progress ? progress_of : NULL, NULL);
  if (progress && r == 0)
    progress_update (100);
  progress_end ();
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}

const struct command compact_command = {
  .name = "compact",
  .synopsis = "compact [-p] IMAGE",
  .summary = "Give back the space of the blocks of IMAGE that hold zeros.",
  .help =
  "Options:\n"
  "  -p, --progress      Show the progress on stderr.\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "Blocks whose data is all zeros become ZERO blocks, the other blocks\n"
  "move down into the space freed and the file is cut after the last\n"
  "one.  IMAGE (a base or a differencing image, not a fixed one) reads\n"
  "the same afterwards; no other program may have it open.\n"
  "Exit status: 0 on success, 1 on failure.\n",
  .run = compact_run,
};
