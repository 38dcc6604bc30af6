/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img snapshot: list, take, restore and delete the snapshots of a
 * VirtualBox machine offline.  The work is libvdi's (vbox-snapshot.c);
 * this is the command line around it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>

#include "libvdi.h"
#include "vbox-registry.h"
#include "vbox-snapshot.h"

#include "vdi-img.h"

/* How deep snapshot s is in the tree (0 for the first). */
static unsigned
depth (const struct vbox_snapshot *s)
{
  unsigned d = 0;

  while ((s = s->parent) != NULL)
    d++;
  return d;
}

static void
print_disks (const struct vbox_registry *reg, const struct vdi_uuid *disks,
             size_t n, unsigned indent)
{
  char u[VDI_UUID_STRLEN];
  size_t i;

  for (i = 0; i < n; ++i) {
    const struct vbox_medium *m = vbox_registry_find_uuid (reg, &disks[i]);

    printf ("%*s  disk %zu: {%s} %s\n", indent * 2, "", i,
            vdi_uuid_format (&disks[i], u), m ? m->location : "(not registered)");
  }
}

/* Print snapshot i and, below it, its children, in file order. */
static void
print_tree (const struct vbox_registry *reg, const struct vbox_machine *m,
            const struct vbox_snapshot *s)
{
  char u[VDI_UUID_STRLEN];
  size_t i;

  printf ("%*s%s {%s}%s\n", depth (s) * 2, "", s->name,
          vdi_uuid_format (&s->uuid, u),
          m->has_current_snapshot &&
          vdi_uuid_equal (&s->uuid, &m->current_snapshot)
          ? " (current)" : "");
  print_disks (reg, s->disks, s->nr_disks, depth (s));
  for (i = 0; i < m->nr_snapshots; ++i)
    if (m->snapshots[i].parent == s)
      print_tree (reg, m, &m->snapshots[i]);
}

static int
list (const char *vbox)
{
  struct vbox_registry *reg = vbox_registry_new ();
  const struct vbox_machine *m;
  size_t i;
  int r = EXIT_FAILURE;

  if (reg == NULL || vbox_registry_load (reg, vbox) == -1)
    goto out;
  m = vbox_registry_machine (reg);
  if (m == NULL) {
    fprintf (stderr, "%s: %s: holds no machine\n", PROGRAM_NAME, vbox);
    goto out;
  }
  printf ("machine \"%s\"\n", m->name);
  for (i = 0; i < m->nr_snapshots; ++i)
    if (m->snapshots[i].parent == NULL)
      print_tree (reg, m, &m->snapshots[i]);
  printf ("current state\n");
  print_disks (reg, m->disks, m->nr_disks, 0);
  r = EXIT_SUCCESS;
 out:
  vbox_registry_free (reg);
  return r;
}

enum {
  ADOPT_OPTION = 256,
  DESCRIPTION_OPTION,
};

static int
snapshot_run (int argc, char *argv[])
{
  static const char short_options[] = "hv";
  static const struct option long_options[] = {
    { "adopt",       required_argument, NULL, ADOPT_OPTION },
    { "description", required_argument, NULL, DESCRIPTION_OPTION },
    { "help",        no_argument,       NULL, 'h' },
    { "verbose",     no_argument,       NULL, 'v' },
    { NULL }
  };
  const char *adopt = NULL, *description = NULL, *action, *vbox;
  int c, n;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    switch (c) {
    case ADOPT_OPTION:
      adopt = optarg;
      break;
    case DESCRIPTION_OPTION:
      description = optarg;
      break;
    default:
      command_common_option (&snapshot_command, c);
    }
  }
  n = argc - optind;
  if (n < 2)
    usage_error (&snapshot_command, "expected an action and MACHINE.vbox");
  action = argv[optind];
  vbox = argv[optind + 1];
  if ((adopt || description) && strcmp (action, "take") != 0)
    usage_error (&snapshot_command,
                 "--adopt and --description go with take only");

  if (strcmp (action, "list") != 0 && strcmp (action, "take") != 0 &&
      strcmp (action, "restore") != 0 && strcmp (action, "delete") != 0)
    usage_error (&snapshot_command, "unknown action '%s'", action);
  if (strcmp (action, "list") == 0) {
    if (n != 2)
      usage_error (&snapshot_command, "list takes MACHINE.vbox only");
    return list (vbox);
  }
  if (n != 3)
    usage_error (&snapshot_command, "%s takes MACHINE.vbox and a snapshot",
                 action);
  if (strcmp (action, "take") == 0)
    return vbox_snapshot_take (vbox, argv[optind + 2], description, adopt)
      == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
  if (strcmp (action, "restore") == 0)
    return vbox_snapshot_restore (vbox, argv[optind + 2])
      == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
  return vbox_snapshot_delete (vbox, argv[optind + 2])
    == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

const struct command snapshot_command = {
  .name = "snapshot",
  .synopsis = "snapshot list MACHINE.vbox\n"
  "       vdi-img snapshot take [--description TEXT] [--adopt DIFF.vdi] "
  "MACHINE.vbox NAME\n"
  "       vdi-img snapshot restore MACHINE.vbox NAME|UUID\n"
  "       vdi-img snapshot delete MACHINE.vbox NAME|UUID",
  .summary = "List, take, restore or delete the snapshots of a machine.",
  .help =
  "Actions:\n"
  "  list      The snapshot tree, the current one marked, and the disks\n"
  "            of each and of the current state.\n"
  "  take      Take snapshot NAME: each attached disk that VirtualBox\n"
  "            would snapshot gets a new empty differencing image.\n"
  "  restore   Go back to a snapshot: the current state's differencing\n"
  "            images are discarded, new ones made over the snapshot's.\n"
  "  delete    Delete a snapshot: each of its disks is merged with the\n"
  "            disk that came after it, as VirtualBox does.\n"
  "\n"
  "Options:\n"
  "  --description TEXT  With take: the snapshot's description.\n"
  "  --adopt DIFF.vdi    With take: the differencing image DIFF.vdi (made\n"
  "                      over an attached disk, e.g. by the vdidiff\n"
  "                      filter) becomes that disk's image in the new\n"
  "                      current state; the old state is the snapshot.\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "The machine's settings file is replaced safely; the old one is kept\n"
  "as MACHINE.vbox-prev.  Exit status: 0 on success, 1 on failure.\n",
  .run = snapshot_run,
};
