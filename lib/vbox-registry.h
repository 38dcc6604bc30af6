/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* VirtualBox XML media registries: VirtualBox.xml (global) and
 * machine .vbox files.  A registry is the union of the media of every
 * file loaded into it, keyed by UUID; a .vbox file also gives the
 * machine: its attachments now and at each snapshot.
 *
 * Errors go through libvdi's log function as one line naming the
 * file and the problem.
 */

#ifndef VBOX_REGISTRY_H
#define VBOX_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "libvdi.h"

/* HardDisk nesting deeper than this is refused (VirtualBox's limit). */
#define VBOX_MAX_MEDIUM_DEPTH 300

struct vbox_medium {
  struct vdi_uuid uuid;
  /* The location resolved to an absolute path: relative locations
   * against the folder of the file that holds them; Windows paths
   * (backslashes, drive letters) by looking for the file name in the
   * machine folder and its Snapshots folder.  If no file is found the
   * path is the best guess, so errors can name it.
   */
  char *location;
  char *location_as_written;    /* the attribute, verbatim */
  char *format;                 /* as written, e.g. "VDI", "vmdk" */
  /* The type of the base medium of this one's tree (diffs inherit
   * it), normalised to VirtualBox's spelling: "Normal", "Immutable",
   * "Writethrough", "Shareable", "Readonly" or "MultiAttach".
   */
  const char *type;
  /* autoReset="true": VirtualBox empties this differencing image when
   * it powers on a machine that has it attached.  Always false for a
   * base medium, as VirtualBox reports it.
   */
  bool auto_reset;
  struct vbox_medium *parent;   /* NULL for a base medium */
  size_t depth;                 /* 1 for a base medium */
  const char *registry_file;    /* the file it was read from */
};

struct vbox_snapshot {
  struct vdi_uuid uuid;
  char *name;
  struct vbox_snapshot *parent; /* NULL for the first snapshot */
  /* An online snapshot: it has a saved state (stateFile), taken while
   * the machine ran.
   */
  bool online;
  /* The hard disks attached at that snapshot, in document order. */
  struct vdi_uuid *disks;
  size_t nr_disks;
};

struct vbox_registry;

/* Create an empty registry, then load files into it.  Loading the
 * same medium UUID twice is fine if both places agree on location and
 * parent; otherwise it is an error naming both files.  At most one
 * loaded file may be a machine (.vbox).
 */
extern struct vbox_registry *vbox_registry_new (void);
extern int vbox_registry_load (struct vbox_registry *reg, const char *filename)
  __attribute__ ((__nonnull__ (1, 2)));
extern void vbox_registry_free (struct vbox_registry *reg);

extern const struct vbox_medium *
vbox_registry_find_uuid (const struct vbox_registry *reg,
                         const struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2)));
/* The differencing children of medium, one a call: start with *pos
 * 0; NULL after the last.
 */
extern const struct vbox_medium *
vbox_registry_next_child (const struct vbox_registry *reg,
                          const struct vbox_medium *medium, size_t *pos)
  __attribute__ ((__nonnull__ (1, 2, 3)));
/* How many differencing children the registry gives medium. */
extern size_t vbox_registry_nr_children (const struct vbox_registry *reg,
                                         const struct vbox_medium *medium)
  __attribute__ ((__nonnull__ (1, 2)));

/* The medium whose file path is: by absolute path, or, when the file
 * exists, by identity (the same device and inode: a symbolic or a
 * hard link to the medium's file is the medium).
 */
extern const struct vbox_medium *
vbox_registry_find_location (const struct vbox_registry *reg,
                             const char *path)
  __attribute__ ((__nonnull__ (1, 2)));

/* The machine, or NULL if no .vbox file was loaded. */
struct vbox_machine {
  struct vdi_uuid uuid;
  char *name;
  char *filename;               /* the .vbox file, absolute */
  char *folder;                 /* its folder */
  char *snapshot_folder;        /* absolute; default "Snapshots" */
  bool has_current_snapshot;
  struct vdi_uuid current_snapshot;
  /* The machine is saved (stateFile): powering it on restores that
   * state.
   */
  bool saved;
  /* Hard disks attached in the current state, in document order
   * (controllers, then attached devices of type HardDisk).
   */
  struct vdi_uuid *disks;
  size_t nr_disks;
  struct vbox_snapshot *snapshots; /* every snapshot of the tree */
  size_t nr_snapshots;
};

extern const struct vbox_machine *
vbox_registry_machine (const struct vbox_registry *reg)
  __attribute__ ((__nonnull__ (1)));

/* The current snapshot, or NULL if the machine has none. */
extern const struct vbox_snapshot *
vbox_machine_current_snapshot (const struct vbox_machine *machine)
  __attribute__ ((__nonnull__ (1)));

/* Find a snapshot by UUID (any form vdi_uuid_parse takes) or else by
 * name.  A name shared by several snapshots is an error that lists
 * their UUIDs.  Returns NULL after logging an error if not found.
 */
extern const struct vbox_snapshot *
vbox_machine_find_snapshot (const struct vbox_machine *machine,
                            const char *name_or_uuid)
  __attribute__ ((__nonnull__ (1, 2)));

#endif /* VBOX_REGISTRY_H */
