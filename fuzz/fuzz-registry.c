/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* libFuzzer harness of the VirtualBox settings-file importer
 * (vbox_registry_load and what it calls: vbox-xml.c, vbox-media.c,
 * vbox-machine.c, vbox-path.c).
 *
 * The input is written as settings.vbox in the folder, next to
 * base.vdi (which a location may name), and loaded into a new
 * registry.  If it loads, every medium, snapshot and attachment is
 * looked up again through the public functions, and the harness
 * aborts if an answer contradicts the registry: a medium not found by
 * its UUID or its location, children that do not name it as their
 * parent, a depth that is not its parent's plus one, a snapshot not
 * found by its UUID.  A file without a machine must load a second
 * time into the same registry and add nothing: it agrees with itself.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvdi.h"
#include "vbox-internal.h"

#include "fuzz-common.h"

static void
check_medium (const struct vbox_registry *reg, const struct vbox_medium *m)
{
  const struct vbox_medium *child;
  size_t pos = 0, n = 0;

  FUZZ_ASSERT (vbox_registry_find_uuid (reg, &m->uuid) == m);
  FUZZ_ASSERT (vbox_registry_find_location (reg, m->location) != NULL);
  FUZZ_ASSERT (m->type != NULL && m->format != NULL);
  if (m->parent)
    FUZZ_ASSERT (m->depth == m->parent->depth + 1);
  else
    FUZZ_ASSERT (m->depth == 1);
  while ((child = vbox_registry_next_child (reg, m, &pos)) != NULL) {
    FUZZ_ASSERT (child->parent == m);
    n++;
  }
  FUZZ_ASSERT (n == vbox_registry_nr_children (reg, m));
}

static void
check_machine (const struct vbox_registry *reg,
               const struct vbox_machine *machine)
{
  char ubuf[VDI_UUID_STRLEN];
  const struct vbox_snapshot *s;
  size_t i;

  for (i = 0; i < machine->nr_disks; ++i)
    vbox_registry_find_uuid (reg, &machine->disks[i]);
  /* Loading checked that the current snapshot is one of them. */
  s = vbox_machine_current_snapshot (machine);
  FUZZ_ASSERT (machine->has_current_snapshot == (s != NULL));
  for (i = 0; i < machine->nr_snapshots; ++i) {
    s = &machine->snapshots[i];
    FUZZ_ASSERT (vbox_machine_find_snapshot
                 (machine, vdi_uuid_format (&s->uuid, ubuf)) == s);
    vbox_machine_find_snapshot (machine, s->name);
  }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  fuzz_write_base ();
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *path = fuzz_write_file ("settings.vbox", data, size, 0);
  struct vbox_registry *reg = vbox_registry_new ();
  const struct vbox_machine *machine;
  size_t i, nr_media;

  FUZZ_ASSERT (reg != NULL);
  if (vbox_registry_load (reg, path) == 0) {
    for (i = 0; i < reg->nr_media; ++i)
      check_medium (reg, reg->media[i]);
    machine = vbox_registry_machine (reg);
    if (machine)
      check_machine (reg, machine);
    else {
      nr_media = reg->nr_media;
      FUZZ_ASSERT (vbox_registry_load (reg, path) == 0);
      FUZZ_ASSERT (reg->nr_media == nr_media);
    }
  }
  vbox_registry_free (reg);
  return 0;
}
