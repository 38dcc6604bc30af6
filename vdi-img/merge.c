/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img merge: merge a differencing image with its parent, as
 * VirtualBox does when it deletes a snapshot.  The work is libvdi's
 * (vdi_merge); this is the command line around it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

static void
show_progress (void *opaque, uint64_t done, uint64_t total)
{
  progress_update (total > 0 ? 100.0 * done / total : 100.0);
}

enum {
  INTO_CHILD_OPTION = 256,
  INTO_PARENT_OPTION,
  PARENT_DIR_OPTION,
};

static int
merge_run (int argc, char *argv[])
{
  static const char short_options[] = "hpv";
  static const struct option long_options[] = {
    { "help",        no_argument,       NULL, 'h' },
    { "into-child",  no_argument,       NULL, INTO_CHILD_OPTION },
    { "into-parent", no_argument,       NULL, INTO_PARENT_OPTION },
    { "parent-dir",  required_argument, NULL, PARENT_DIR_OPTION },
    { "progress",    no_argument,       NULL, 'p' },
    { "verbose",     no_argument,       NULL, 'v' },
    { NULL }
  };
  struct parent_dirs parent_dirs = { NULL, 0 };
  struct vdi_parent_search search;
  struct vdi_merge merge = { .direction = VDI_MERGE_INTO_PARENT };
  bool into_parent = false, into_child = false, progress = false;
  int c, r;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    switch (c) {
    case INTO_CHILD_OPTION:
      into_child = true;
      break;
    case INTO_PARENT_OPTION:
      into_parent = true;
      break;
    case PARENT_DIR_OPTION:
      parent_dirs_add (&parent_dirs, optarg);
      break;
    case 'p':
      progress = true;
      break;
    default:
      command_common_option (&merge_command, c);
    }
  }
  if (into_parent && into_child)
    command_usage_error (&merge_command,
                         "--into-parent and --into-child cannot be "
                         "used together");
  if (optind != argc - 1)
    command_usage_error (&merge_command, "expected one IMAGE, got %d",
                         argc - optind);

  search = (struct vdi_parent_search) {
    .dirs = parent_dirs.dirs,
    .nr_dirs = parent_dirs.nr_dirs,
  };
  merge.direction = into_child ? VDI_MERGE_INTO_CHILD : VDI_MERGE_INTO_PARENT;
  merge.search = &search;
  if (progress) {
    merge.progress = show_progress;
    progress_update (0);
  }
  r = vdi_merge (argv[optind], &merge);
  if (progress && r == 0)
    progress_update (100);
  progress_end ();
  parent_dirs_free (&parent_dirs);
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}

const struct command merge_command = {
  .name = "merge",
  .synopsis = "merge [--into-parent | --into-child] [-p] "
  "[--parent-dir DIR]... IMAGE",
  .summary = "Merge the differencing image IMAGE with its parent.",
  .help =
  "Options:\n"
  "  --into-parent       Write IMAGE's blocks into its parent, then\n"
  "                      remove IMAGE (the default, as qemu-img commit).\n"
  "  --into-child        Write the parent's blocks into IMAGE, which takes\n"
  "                      the parent's place; remove the parent.\n"
  "  -p, --progress      Show the progress on stderr.\n"
  "  --parent-dir DIR    Also look in DIR for the parent and for the\n"
  "                      other images linked to the pair (repeatable).\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "IMAGE is always the differencing image of the pair.\n"
  "Exit status: 0 on success, 1 on failure.\n",
  .run = merge_run,
};
