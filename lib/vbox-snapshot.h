/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Offline snapshots of a VirtualBox machine, written back to its
 * settings file as VirtualBox writes them (vbox-snapshot.c).  Each
 * returns 0, or -1 after one error; the settings file is replaced
 * safely, the old one kept as FILE-prev.
 */

#ifndef VBOX_SNAPSHOT_H
#define VBOX_SNAPSHOT_H

/* Take snapshot name of the machine of vbox: every attached hard disk
 * that VirtualBox would snapshot gets a new, empty differencing image
 * in the machine's snapshot folder, which the current state then
 * uses.  With adopt, the differencing layer in that file (made over
 * one of the attached disks, e.g. by the vdidiff filter) is the new
 * image of that disk instead: the machine's current state becomes the
 * state the layer holds.
 */
extern int vbox_snapshot_take (const char *vbox, const char *name,
                               const char *description, const char *adopt)
  __attribute__ ((__nonnull__ (1, 2)));

/* Restore snapshot which (a name or a UUID): the current state's
 * differencing images are discarded, and fresh ones made over the
 * snapshot's media.
 */
extern int vbox_snapshot_restore (const char *vbox, const char *which)
  __attribute__ ((__nonnull__ (1, 2)));

/* Delete snapshot which: each of its disks is merged with the disk
 * that came after it (vdi_merge, the way VirtualBox chooses) or, with
 * nothing after it, removed; the registry, the attachments and the
 * snapshot tree are rewritten as VirtualBox rewrites them.  The files
 * merged away are removed after the settings file is replaced; run
 * again after a crash, the same delete finishes.
 */
extern int vbox_snapshot_delete (const char *vbox, const char *which)
  __attribute__ ((__nonnull__ (1, 2)));

#endif /* VBOX_SNAPSHOT_H */
