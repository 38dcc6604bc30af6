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
#include "vbox-registry.h"

#include "vdi-img.h"

enum {
  INTO_CHILD_OPTION = 256,
  INTO_PARENT_OPTION,
  PARENT_DIR_OPTION,
  REGISTRY_OPTION,
};

/* Load the registries named by --registry; NULL after an error. */
static struct vbox_registry *
load_registries (const char *const *files, size_t n)
{
  struct vbox_registry *reg = vbox_registry_new ();
  size_t i;

  if (reg == NULL)
    return NULL;
  for (i = 0; i < n; ++i) {
    if (vbox_registry_load (reg, files[i]) == -1) {
      vbox_registry_free (reg);
      return NULL;
    }
  }
  return reg;
}

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
    { "registry",    required_argument, NULL, REGISTRY_OPTION },
    { "verbose",     no_argument,       NULL, 'v' },
    { NULL }
  };
  struct option_list parent_dirs = { NULL, 0 };
  struct option_list registry_files = { NULL, 0 };
  struct vbox_registry *registry = NULL;
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
      option_list_add (&parent_dirs, optarg);
      break;
    case REGISTRY_OPTION:
      option_list_add (&registry_files, optarg);
      break;
    case 'p':
      progress = true;
      break;
    default:
      command_common_option (&merge_command, c);
    }
  }
  if (into_parent && into_child)
    usage_error (&merge_command,
                         "--into-parent and --into-child cannot be "
                         "used together");
  if (parent_dirs.n > 0 && registry_files.n > 0)
    usage_error (&merge_command,
                         "--parent-dir and --registry cannot be used "
                         "together: with a registry, images are found "
                         "in the registry");
  if (optind != argc - 1)
    usage_error (&merge_command, "expected one IMAGE, got %d",
                         argc - optind);

  if (registry_files.n > 0) {
    registry = load_registries (registry_files.values, registry_files.n);
    if (registry == NULL)
      return EXIT_FAILURE;
  }
  search = (struct vdi_parent_search) {
    .registry = registry,
    .dirs = parent_dirs.values,
    .nr_dirs = parent_dirs.n,
    .dirs_option = "--parent-dir",
    .registry_option = "--registry",
  };
  merge.direction = into_child ? VDI_MERGE_INTO_CHILD : VDI_MERGE_INTO_PARENT;
  merge.search = &search;
  if (progress) {
    merge.progress = progress_of;
    progress_update (0);
  }
  r = vdi_merge (argv[optind], &merge);
  if (progress && r == 0)
    progress_update (100);
  progress_end ();
  vbox_registry_free (registry);
  option_list_free (&parent_dirs);
  option_list_free (&registry_files);
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}

const struct command merge_command = {
  .name = "merge",
  .synopsis = "merge [--into-parent | --into-child] [-p] "
  "[--parent-dir DIR... | --registry FILE...] IMAGE",
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
  "  --registry FILE     Find the parent and the other images linked to\n"
  "                      the pair in this .vbox or VirtualBox.xml\n"
  "                      (repeatable); a registered image is never\n"
  "                      removed.\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "IMAGE is always the differencing image of the pair.\n"
  "Exit status: 0 on success, 1 on failure.\n",
  .run = merge_run,
};
