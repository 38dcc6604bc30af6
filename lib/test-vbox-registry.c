/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Tests of the VirtualBox media registry reader: the real settings
 * files of the shared test data, registries generated here (nesting,
 * paths, attachments, snapshots, unions) and hostile inputs, each of
 * which must fail with exactly one error and print nothing itself.
 *
 * Every input is written at run time into a temporary folder.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <CUnit/Basic.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "vbox-registry.h"
#include "test-common.h"

#define VBOX_NS "http://www.virtualbox.org/"
#define INNOTEK_NS "http://www.innotek.de/VirtualBox-settings"

/* The real files (see testdata/MANIFEST.md). */
#define GENYMOTION "tidev_androidlib/genymotion-google-pixel-8.0-api26.vbox"
#define LINUX_VM "tidev_androidlib/linux-vm.vbox"
#define GLOBAL_XML "StefanScherer_basebox-slave/VirtualBox.xml"

#define GENY_MACHINE "a9364ace-c263-433a-b137-1c8d4e70c348"
#define GENY_SYSTEM "72f9660a-2e75-4576-bb09-5480cc0e0462"
#define GENY_SYSTEM_DIFF "bf3e15cd-2a62-4561-91ba-78f9ca9b2d40"
#define GENY_DATA "5b9870b6-b99d-4eff-a723-c149071c550b"
#define GENY_DATA_DIFF "96fb3733-225f-4780-929b-d723216b9b9a"
#define GENY_SNAPSHOT "c760517a-3c69-4b8e-8941-b8e4a0eea992"
#define LINUX_VM_DISK "b48fd6c3-7041-4aa2-8b0f-b98d43fb739d"

/* Temporary folders, all under one removed at exit. */

static char *top_dir;

static int
remove_entry (const char *path,
              const struct stat *sb __attribute__ ((__unused__)),
              int flag __attribute__ ((__unused__)),
              struct FTW *ftw __attribute__ ((__unused__)))
{
  return remove (path);
}

static void
remove_top_dir (void)
{
  if (top_dir) {
    nftw (top_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (top_dir);
    top_dir = NULL;
  }
}

static void
die (const char *what)
{
  perror (what);
  exit (EXIT_FAILURE);
}

/* A new empty folder for one test. */
static char *
make_dir (void)
{
  char *dir;

  if (top_dir == NULL) {
    const char *tmp = getenv ("TMPDIR");

    if (tmp == NULL || *tmp == '\0')
      tmp = "/tmp";
    if (asprintf (&top_dir, "%s/test-vbox-registry-XXXXXX", tmp) == -1)
      die ("asprintf");
    if (mkdtemp (top_dir) == NULL)
      die ("mkdtemp");
    atexit (remove_top_dir);
  }
  if (asprintf (&dir, "%s/XXXXXX", top_dir) == -1)
    die ("asprintf");
  if (mkdtemp (dir) == NULL)
    die ("mkdtemp");
  return dir;
}

static char *
path_join (const char *dir, const char *name)
{
  char *path;

  if (asprintf (&path, "%s/%s", dir, name) == -1)
    die ("asprintf");
  return path;
}

static void
make_subdir (const char *dir, const char *name)
{
  char *path = path_join (dir, name);

  if (mkdir (path, 0755) == -1 && errno != EEXIST)
    die (path);
  free (path);
}

/* Write len bytes to dir/name; returns the path. */
static char *
write_bytes (const char *dir, const char *name, const void *buf, size_t len)
{
  char *path = path_join (dir, name);
  FILE *fp = fopen (path, "w");

  if (fp == NULL)
    die (path);
  if (len > 0 && fwrite (buf, 1, len, fp) != len)
    die (path);
  if (fclose (fp) == EOF)
    die (path);
  return path;
}

static char *
write_text (const char *dir, const char *name, const char *text)
{
  return write_bytes (dir, name, text, strlen (text));
}

/* Text builders on open_memstream. */
struct text {
  char *buf;
  size_t len;
  FILE *fp;
};

static void
text_open (struct text *t)
{
  t->buf = NULL;
  t->len = 0;
  t->fp = open_memstream (&t->buf, &t->len);
  if (t->fp == NULL)
    die ("open_memstream");
}

static char *
text_close (struct text *t)
{
  if (fclose (t->fp) == EOF)
    die ("fclose");
  return t->buf;
}

/* A UUID made from a number, in braces. */
static const char *
uuid_n (unsigned n, char buf[40])
{
  snprintf (buf, 40, "{%08x-1111-4222-8333-%012x}", n + 1, n * 7 + 1);
  return buf;
}

static void
parse_uuid (const char *text, struct vdi_uuid *uuid)
{
  if (vdi_uuid_parse (text, uuid) == -1) {
    fprintf (stderr, "bad UUID in the test: %s\n", text);
    exit (EXIT_FAILURE);
  }
}

static const struct vbox_medium *
find (const struct vbox_registry *reg, const char *uuid_text)
{
  struct vdi_uuid u;

  parse_uuid (uuid_text, &u);
  return vbox_registry_find_uuid (reg, &u);
}

static bool
uuid_is (const struct vdi_uuid *uuid, const char *text)
{
  struct vdi_uuid u;

  parse_uuid (text, &u);
  return vdi_uuid_equal (uuid, &u);
}

static char *
real_path (const char *path)
{
  char *r = realpath (path, NULL);

  if (r == NULL)
    die (path);
  return r;
}

/* Load one file into a new registry; NULL if loading failed. */
static struct vbox_registry *
load_one (const char *path)
{
  struct vbox_registry *reg = vbox_registry_new ();

  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  if (vbox_registry_load (reg, path) == -1) {
    vbox_registry_free (reg);
    return NULL;
  }
  return reg;
}

/* Nothing may reach stderr while a hostile file is read: stderr goes
 * to a file meanwhile.
 */
static int saved_stderr = -1;
static char *stderr_file;

static void
stderr_capture_begin (const char *dir)
{
  int fd;

  stderr_file = path_join (dir, "stderr.txt");
  fflush (stderr);
  saved_stderr = dup (2);
  fd = open (stderr_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (saved_stderr == -1 || fd == -1 || dup2 (fd, 2) == -1)
    die ("capturing stderr");
  close (fd);
}

/* Returns the number of bytes written to stderr meanwhile. */
static off_t
stderr_capture_end (void)
{
  struct stat statbuf;
  off_t size;

  fflush (stderr);
  if (dup2 (saved_stderr, 2) == -1)
    die ("dup2");
  close (saved_stderr);
  saved_stderr = -1;
  if (stat (stderr_file, &statbuf) == -1)
    die (stderr_file);
  size = statbuf.st_size;
  free (stderr_file);
  stderr_file = NULL;
  return size;
}

/* The real test data. */

static char *
testdata_path (const char *name)
{
  const char *dir = getenv ("VDI_TESTDATA_DIR");
  char *path;

  if (dir == NULL || *dir == '\0')
    dir = "/work/shared/testdata";
  path = path_join (dir, name);
  if (access (path, R_OK) == -1) {
    printf ("\n    SKIPPED: %s: %m (set VDI_TESTDATA_DIR)\n    ", path);
    free (path);
    return NULL;
  }
  return path;
}

/* The folder of a file, through realpath. */
static char *
real_folder (const char *path)
{
  char *r = real_path (path);
  char *slash = strrchr (r, '/');

  *slash = '\0';
  return r;
}

static void
check_genymotion (const struct vbox_registry *reg, const char *file)
{
  char *dir = real_folder (file), *real_file = real_path (file);
  char *system_loc = path_join (dir, "android_system_disk.vmdk");
  char *data_loc = path_join (dir, "android_data_disk.vmdk");
  char *snapshots = path_join (dir, "Snapshots");
  char *system_diff_loc =
    path_join (dir, "Snapshots/{" GENY_SYSTEM_DIFF "}.vmdk");
  char *data_diff_loc = path_join (dir, "Snapshots/{" GENY_DATA_DIFF "}.vmdk");
  const struct vbox_medium *sys, *sys_diff, *data, *data_diff;
  const struct vbox_machine *m;
  const struct vbox_snapshot *s;

  sys = find (reg, GENY_SYSTEM);
  sys_diff = find (reg, GENY_SYSTEM_DIFF);
  data = find (reg, GENY_DATA);
  data_diff = find (reg, GENY_DATA_DIFF);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sys);
  CU_ASSERT_PTR_NOT_NULL_FATAL (sys_diff);
  CU_ASSERT_PTR_NOT_NULL_FATAL (data);
  CU_ASSERT_PTR_NOT_NULL_FATAL (data_diff);

  /* Two bases, each with one child in Snapshots/. */
  CU_ASSERT_PTR_NULL (sys->parent);
  CU_ASSERT_PTR_NULL (data->parent);
  CU_ASSERT_PTR_EQUAL (sys_diff->parent, sys);
  CU_ASSERT_PTR_EQUAL (data_diff->parent, data);
  CU_ASSERT_EQUAL (sys->depth, 1);
  CU_ASSERT_EQUAL (sys_diff->depth, 2);
  CU_ASSERT_EQUAL (data_diff->depth, 2);
  CU_ASSERT_STRING_EQUAL (sys->location, system_loc);
  CU_ASSERT_STRING_EQUAL (data->location, data_loc);
  CU_ASSERT_STRING_EQUAL (sys_diff->location, system_diff_loc);
  CU_ASSERT_STRING_EQUAL (data_diff->location, data_diff_loc);
  CU_ASSERT_STRING_EQUAL (sys->location_as_written,
                          "android_system_disk.vmdk");
  CU_ASSERT_STRING_EQUAL (sys_diff->location_as_written,
                          "Snapshots/{" GENY_SYSTEM_DIFF "}.vmdk");
  CU_ASSERT_STRING_EQUAL (sys->format, "VMDK");
  CU_ASSERT_STRING_EQUAL (data_diff->format, "VMDK");
  CU_ASSERT_STRING_EQUAL (sys->type, "Normal");
  CU_ASSERT_STRING_EQUAL (sys_diff->type, "Normal"); /* inherited */
  CU_ASSERT_FALSE (sys_diff->auto_reset);
  CU_ASSERT_STRING_EQUAL (sys->registry_file, real_file);

  /* The current state uses the children, the snapshot the bases. */
  m = vbox_registry_machine (reg);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT_TRUE (uuid_is (&m->uuid, GENY_MACHINE));
  CU_ASSERT_STRING_EQUAL (m->name,
                          "PREVIEW - Google Pixel - 8.0 - API 26 - 1080x1920");
  CU_ASSERT_STRING_EQUAL (m->filename, real_file);
  CU_ASSERT_STRING_EQUAL (m->folder, dir);
  CU_ASSERT_STRING_EQUAL (m->snapshot_folder, snapshots);
  CU_ASSERT_EQUAL_FATAL (m->nr_disks, 2);
  CU_ASSERT_TRUE (uuid_is (&m->disks[0], GENY_SYSTEM_DIFF));
  CU_ASSERT_TRUE (uuid_is (&m->disks[1], GENY_DATA_DIFF));
  CU_ASSERT_TRUE (m->has_current_snapshot);
  CU_ASSERT_TRUE (uuid_is (&m->current_snapshot, GENY_SNAPSHOT));
  CU_ASSERT_EQUAL_FATAL (m->nr_snapshots, 1);
  s = &m->snapshots[0];
  CU_ASSERT_STRING_EQUAL (s->name, "factory-backup");
  CU_ASSERT_TRUE (uuid_is (&s->uuid, GENY_SNAPSHOT));
  CU_ASSERT_PTR_NULL (s->parent);
  CU_ASSERT_EQUAL_FATAL (s->nr_disks, 2);
  CU_ASSERT_TRUE (uuid_is (&s->disks[0], GENY_SYSTEM));
  CU_ASSERT_TRUE (uuid_is (&s->disks[1], GENY_DATA));

  /* Finding the snapshot and media. */
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, "factory-backup"), s);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, GENY_SNAPSHOT), s);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, "{C760517A-3C69-4B8E"
                                                   "-8941-B8E4A0EEA992}"), s);
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, system_loc), sys);
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, data_diff_loc),
                       data_diff);

  free (dir);
  free (real_file);
  free (system_loc);
  free (data_loc);
  free (snapshots);
  free (system_diff_loc);
  free (data_diff_loc);
}

static void
test_real_genymotion (void)
{
  char *file = testdata_path (GENYMOTION);
  struct vbox_registry *reg;

  if (file == NULL)
    return;
  reg = load_one (file);
  CU_ASSERT_PTR_NOT_NULL (reg);
  ASSERT_NO_ERROR ();
  if (reg)
    check_genymotion (reg, file);
  vbox_registry_free (reg);
  free (file);
}

static void
test_real_linux_vm (void)
{
  char *file = testdata_path (LINUX_VM);
  char *dir, *loc;
  struct vbox_registry *reg;
  const struct vbox_medium *disk;
  const struct vbox_machine *m;

  if (file == NULL)
    return;
  reg = load_one (file);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  dir = real_folder (file);
  loc = path_join (dir, "Linux VM.vdi");
  disk = find (reg, LINUX_VM_DISK);
  CU_ASSERT_PTR_NOT_NULL_FATAL (disk);
  CU_ASSERT_STRING_EQUAL (disk->location, loc);
  CU_ASSERT_STRING_EQUAL (disk->format, "VDI");
  CU_ASSERT_STRING_EQUAL (disk->type, "Normal");
  CU_ASSERT_PTR_NULL (disk->parent);
  m = vbox_registry_machine (reg);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT_STRING_EQUAL (m->name, "Linux VM");
  /* The DVD drive of the IDE controller is not a hard disk. */
  CU_ASSERT_EQUAL_FATAL (m->nr_disks, 1);
  CU_ASSERT_TRUE (uuid_is (&m->disks[0], LINUX_VM_DISK));
  CU_ASSERT_FALSE (m->has_current_snapshot);
  CU_ASSERT_EQUAL (m->nr_snapshots, 0);
  vbox_registry_free (reg);
  free (loc);
  free (dir);
  free (file);
}

static void
test_real_global (void)
{
  char *file = testdata_path (GLOBAL_XML);
  struct vbox_registry *reg;

  if (file == NULL)
    return;
  reg = load_one (file);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  CU_ASSERT_PTR_NULL (vbox_registry_machine (reg));
  CU_ASSERT_PTR_NULL (find (reg, GENY_SYSTEM));
  vbox_registry_free (reg);
  free (file);
}

/* The real VirtualBox.xml and the real .vbox in one registry. */
static void
test_real_union (void)
{
  char *global = testdata_path (GLOBAL_XML);
  char *machine = testdata_path (GENYMOTION);
  struct vbox_registry *reg;

  if (global && machine) {
    reg = vbox_registry_new ();
    CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
    CU_ASSERT_EQUAL (vbox_registry_load (reg, global), 0);
    CU_ASSERT_EQUAL (vbox_registry_load (reg, machine), 0);
    ASSERT_NO_ERROR ();
    check_genymotion (reg, machine);
    vbox_registry_free (reg);
  }
  free (global);
  free (machine);
}

/* Generated registries. */

static void
vbox_open (struct text *t, const char *ns)
{
  text_open (t);
  fprintf (t->fp, "<?xml version=\"1.0\"?>\n");
  if (ns)
    fprintf (t->fp, "<VirtualBox xmlns=\"%s\" version=\"1.19-linux\">\n", ns);
  else
    fprintf (t->fp, "<VirtualBox version=\"1.19-linux\">\n");
}

/* A machine file holding a chain of depth HardDisks, the leaf
 * attached.
 */
static char *
make_chain (const char *dir, unsigned depth)
{
  struct text t;
  char u[40];
  unsigned i;
  char *text, *path;

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"chain\">\n"
           "<MediaRegistry><HardDisks>\n", uuid_n (9999, u));
  for (i = 0; i < depth; ++i)
    fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"%s%u.vdi\" "
             "format=\"VDI\"%s>\n", uuid_n (i, u),
             i == 0 ? "" : "Snapshots/", i,
             i == 0 ? " type=\"immutable\"" : " autoReset=\"true\"");
  for (i = 0; i < depth; ++i)
    fprintf (t.fp, "</HardDisk>\n");
  fprintf (t.fp, "</HardDisks></MediaRegistry>\n"
           "<Hardware><StorageControllers>"
           "<StorageController name=\"SATA\" type=\"AHCI\">"
           "<AttachedDevice type=\"HardDisk\" port=\"0\" device=\"0\">"
           "<Image uuid=\"%s\"/></AttachedDevice>"
           "</StorageController></StorageControllers></Hardware>\n"
           "</Machine></VirtualBox>\n", uuid_n (depth - 1, u));
  text = text_close (&t);
  path = write_text (dir, "chain.vbox", text);
  free (text);
  return path;
}

static void
test_nesting_depths (void)
{
  static const unsigned depths[] = { 1, 2, 8, 64, 300 };
  size_t i;

  for (i = 0; i < sizeof depths / sizeof depths[0]; ++i) {
    char *dir = make_dir (), *path = make_chain (dir, depths[i]);
    char *real_dir = real_path (dir), *base_loc = path_join (real_dir, "0.vdi");
    struct vbox_registry *reg;
    const struct vbox_medium *leaf, *m;
    const struct vbox_machine *machine;
    size_t n = 0;
    char u[40];

    test_log_reset ();
    reg = load_one (path);
    CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
    ASSERT_NO_ERROR ();
    leaf = find (reg, uuid_n (depths[i] - 1, u));
    CU_ASSERT_PTR_NOT_NULL_FATAL (leaf);
    CU_ASSERT_EQUAL (leaf->depth, depths[i]);
    CU_ASSERT_STRING_EQUAL (leaf->type, "Immutable");
    CU_ASSERT_EQUAL (leaf->auto_reset, depths[i] > 1);
    for (m = leaf; m->parent; m = m->parent) {
      CU_ASSERT_EQUAL (m->parent->depth + 1, m->depth);
      n++;
    }
    CU_ASSERT_EQUAL (n + 1, depths[i]);
    CU_ASSERT_TRUE (uuid_is (&m->uuid, uuid_n (0, u)));
    CU_ASSERT_STRING_EQUAL (m->location, base_loc);
    CU_ASSERT_FALSE (m->auto_reset);
    machine = vbox_registry_machine (reg);
    CU_ASSERT_PTR_NOT_NULL_FATAL (machine);
    CU_ASSERT_EQUAL_FATAL (machine->nr_disks, 1);
    CU_ASSERT_TRUE (vdi_uuid_equal (&machine->disks[0], &leaf->uuid));
    vbox_registry_free (reg);
    free (base_loc);
    free (real_dir);
    free (path);
    free (dir);
  }
}

static void
test_nesting_too_deep (void)
{
  char *dir = make_dir (), *path = make_chain (dir, 301);

  CU_ASSERT_PTR_NULL (load_one (path));
  ASSERT_ONE_ERROR (path, "nested more than 300 deep");
  free (path);
  free (dir);
}

/* Relative, absolute and Windows locations. */
static void
test_locations (void)
{
  char *dir = make_dir (), *real_dir = real_path (dir);
  char *vm_dir, *other_dir, *path, *text, *expect;
  struct vbox_registry *reg;
  const struct vbox_medium *m;
  struct text t;
  char u[40];

  make_subdir (dir, "vm");
  make_subdir (dir, "other");
  vm_dir = path_join (real_dir, "vm");
  other_dir = path_join (real_dir, "other");
  make_subdir (vm_dir, "snaps");
  make_subdir (vm_dir, "sub");
  free (write_text (vm_dir, "win-base.vdi", ""));
  free (write_text (vm_dir, "snaps/{win-diff}.vdi", ""));
  free (write_text (vm_dir, "sub/rel.vdi", ""));
  free (write_text (other_dir, "abs.vdi", ""));

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"paths\" "
           "snapshotFolder=\"snaps\">\n<MediaRegistry><HardDisks>\n",
           uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"plain.vdi\" "
           "format=\"VDI\"/>\n", uuid_n (0, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"sub/rel.vdi\" "
           "format=\"vdi\"/>\n", uuid_n (1, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"%s/abs.vdi\" "
           "format=\"VDI\"/>\n", uuid_n (2, u), other_dir);
  fprintf (t.fp, "<HardDisk uuid=\"%s\" "
           "location=\"C:\\Users\\me\\VirtualBox VMs\\paths\\win-base.vdi\" "
           "format=\"VDI\">\n", uuid_n (3, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"C:\\Users\\me\\"
           "VirtualBox VMs\\paths\\Snapshots\\{win-diff}.vdi\" "
           "format=\"VDI\"/>\n", uuid_n (4, u));
  fprintf (t.fp, "</HardDisk>\n");
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"sub\\rel.vdi\" "
           "format=\"VDI\"/>\n", uuid_n (5, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"D:\\gone\\missing.vdi\" "
           "format=\"VDI\"/>\n", uuid_n (6, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"\\\\server\\share\\"
           "abs.vdi\" format=\"VDI\"/>\n", uuid_n (7, u));
  fprintf (t.fp, "</HardDisks></MediaRegistry></Machine></VirtualBox>\n");
  text = text_close (&t);
  path = write_text (vm_dir, "paths.vbox", text);
  free (text);

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();

  /* Relative: against the machine folder. */
  m = find (reg, uuid_n (0, u));
  expect = path_join (vm_dir, "plain.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  CU_ASSERT_STRING_EQUAL (m->location_as_written, "plain.vdi");
  free (expect);
  m = find (reg, uuid_n (1, u));
  expect = path_join (vm_dir, "sub/rel.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  CU_ASSERT_STRING_EQUAL (m->format, "vdi");
  free (expect);

  /* Absolute: as is. */
  m = find (reg, uuid_n (2, u));
  expect = path_join (other_dir, "abs.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  free (expect);

  /* Windows: the file name in the machine folder ... */
  m = find (reg, uuid_n (3, u));
  expect = path_join (vm_dir, "win-base.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  CU_ASSERT_STRING_EQUAL (m->location_as_written,
                          "C:\\Users\\me\\VirtualBox VMs\\paths\\win-base.vdi");
  free (expect);
  /* ... or in its snapshot folder. */
  m = find (reg, uuid_n (4, u));
  expect = path_join (vm_dir, "snaps/{win-diff}.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  CU_ASSERT_PTR_EQUAL (m->parent, find (reg, uuid_n (3, u)));
  free (expect);
  /* A relative Windows path. */
  m = find (reg, uuid_n (5, u));
  expect = path_join (vm_dir, "sub/rel.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  free (expect);
  /* Not found: the best guess is in the machine folder. */
  m = find (reg, uuid_n (6, u));
  expect = path_join (vm_dir, "missing.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  free (expect);
  /* A UNC path is not looked for anywhere else. */
  m = find (reg, uuid_n (7, u));
  expect = path_join (vm_dir, "abs.vdi");
  CU_ASSERT_STRING_EQUAL (m->location, expect);
  free (expect);

  vbox_registry_free (reg);
  free (path);
  free (vm_dir);
  free (other_dir);
  free (real_dir);
  free (dir);
}

/* vbox_registry_find_location through realpath. */
static void
test_find_location (void)
{
  char *dir = make_dir (), *real_dir = real_path (dir);
  char *disk, *link, *path, *text, *dotted, *absent;
  struct vbox_registry *reg;
  const struct vbox_medium *m;
  struct text t;
  char u[40], u2[40], u3[40];

  make_subdir (real_dir, "sub");
  disk = write_text (real_dir, "disk.vdi", "");
  link = path_join (real_dir, "link.vdi");
  CU_ASSERT_EQUAL_FATAL (symlink ("disk.vdi", link), 0);

  vbox_open (&t, NULL);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"find\">\n"
           "<MediaRegistry><HardDisks>\n"
           "<HardDisk uuid=\"%s\" location=\"sub/../disk.vdi\" "
           "format=\"VDI\"/>\n"
           "<HardDisk uuid=\"%s\" location=\"absent.vdi\" format=\"VDI\"/>\n"
           "</HardDisks></MediaRegistry></Machine></VirtualBox>\n",
           uuid_n (100, u), uuid_n (0, u2), uuid_n (1, u3));
  text = text_close (&t);
  path = write_text (real_dir, "find.vbox", text);
  free (text);

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  m = find (reg, uuid_n (0, u));
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, disk), m);
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, link), m);
  dotted = path_join (real_dir, "sub/../sub/../disk.vdi");
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, dotted), m);
  absent = path_join (real_dir, "absent.vdi");
  CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, absent),
                       find (reg, uuid_n (1, u)));
  /* Relative names, existing or not, against the current folder. */
  {
    char *cwd = getcwd (NULL, 0);

    CU_ASSERT_PTR_NOT_NULL_FATAL (cwd);
    CU_ASSERT_EQUAL_FATAL (chdir (real_dir), 0);
    CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, "link.vdi"), m);
    CU_ASSERT_PTR_EQUAL (vbox_registry_find_location (reg, "absent.vdi"),
                         find (reg, uuid_n (1, u)));
    CU_ASSERT_PTR_NULL (vbox_registry_find_location (reg, "other.vdi"));
    CU_ASSERT_EQUAL (chdir (cwd), 0);
    free (cwd);
  }
  CU_ASSERT_PTR_NULL (vbox_registry_find_location (reg, "/nonexistent.vdi"));
  CU_ASSERT_PTR_NULL (vbox_registry_find_location (reg, path));
  ASSERT_NO_ERROR ();

  vbox_registry_free (reg);
  free (absent);
  free (dotted);
  free (path);
  free (link);
  free (disk);
  free (real_dir);
  free (dir);
}

/* Attachments: StorageControllers under Machine or under Hardware. */
static void
check_attachments (bool in_hardware, const char *ns)
{
  char *dir = make_dir (), *path, *text, *real_dir, *snapshots;
  struct vbox_registry *reg;
  const struct vbox_machine *m;
  struct text t;
  char u[40];

  vbox_open (&t, ns);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"att\">\n"
           "<MediaRegistry><HardDisks>\n", uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"a.vdi\" format=\"VDI\"/>\n",
           uuid_n (0, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"b.vdi\" format=\"VDI\"/>\n",
           uuid_n (1, u));
  fprintf (t.fp, "</HardDisks><DVDImages><Image uuid=\"%s\" "
           "location=\"x.iso\"/></DVDImages></MediaRegistry>\n",
           uuid_n (50, u));
  fprintf (t.fp, "%s<StorageControllers>\n", in_hardware ? "<Hardware>" : "");
  fprintf (t.fp, "<StorageController name=\"IDE\" type=\"PIIX4\">"
           "<AttachedDevice passthrough=\"false\" type=\"DVD\" port=\"1\" "
           "device=\"0\"><Image uuid=\"%s\"/></AttachedDevice>"
           "<AttachedDevice type=\"HardDisk\" port=\"0\" device=\"0\">"
           "<Image uuid=\"%s\"/></AttachedDevice></StorageController>\n",
           uuid_n (50, u), "{00000002-1111-4222-8333-000000000008}");
  fprintf (t.fp, "<StorageController name=\"SATA\" type=\"AHCI\">"
           "<AttachedDevice type=\"harddisk\" port=\"0\" device=\"0\">"
           "<Image uuid=\"%s\"/></AttachedDevice>"
           "<AttachedDevice type=\"HardDisk\" port=\"1\" device=\"0\">"
           "<Image uuid=\"{77777777-1111-4222-8333-000000000001}\"/>"
           "</AttachedDevice></StorageController>\n", uuid_n (0, u));
  fprintf (t.fp, "</StorageControllers>%s\n</Machine></VirtualBox>\n",
           in_hardware ? "</Hardware>" : "");
  text = text_close (&t);
  path = write_text (dir, "att.vbox", text);
  free (text);

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  /* An attached medium that is not in the registry is no error. */
  ASSERT_NO_ERROR ();
  m = vbox_registry_machine (reg);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  /* No snapshotFolder attribute: the default. */
  real_dir = real_path (dir);
  snapshots = path_join (real_dir, "Snapshots");
  CU_ASSERT_STRING_EQUAL (m->folder, real_dir);
  CU_ASSERT_STRING_EQUAL (m->snapshot_folder, snapshots);
  CU_ASSERT_FALSE (m->has_current_snapshot);
  free (snapshots);
  free (real_dir);
  /* Document order; the DVD is left out. */
  CU_ASSERT_EQUAL_FATAL (m->nr_disks, 3);
  CU_ASSERT_TRUE (uuid_is (&m->disks[0], uuid_n (1, u)));
  CU_ASSERT_TRUE (uuid_is (&m->disks[1], uuid_n (0, u)));
  CU_ASSERT_TRUE (uuid_is (&m->disks[2],
                           "77777777-1111-4222-8333-000000000001"));
  CU_ASSERT_PTR_NOT_NULL (vbox_registry_find_uuid (reg, &m->disks[0]));
  CU_ASSERT_PTR_NULL (vbox_registry_find_uuid (reg, &m->disks[2]));
  /* DVD images are not media of the registry. */
  CU_ASSERT_PTR_NULL (find (reg, uuid_n (50, u)));

  vbox_registry_free (reg);
  free (path);
  free (dir);
}

static void
test_controllers_under_machine (void)
{
  check_attachments (false, VBOX_NS);
}

static void
test_controllers_under_hardware (void)
{
  check_attachments (true, INNOTEK_NS);
}

static void
test_no_namespace (void)
{
  check_attachments (true, NULL);
}

/* A snapshot tree:
 *   "first" (controllers directly under Snapshot)
 *     "twin" (controllers under Hardware)
 *     "twin"
 *       "last"
 */
#define SNAP_FIRST "10000000-0000-4000-8000-000000000001"
#define SNAP_TWIN1 "10000000-0000-4000-8000-000000000002"
#define SNAP_TWIN2 "10000000-0000-4000-8000-000000000003"
#define SNAP_LAST "10000000-0000-4000-8000-00000000000a"

static char *
make_snapshots (const char *dir)
{
  struct text t;
  char u[40], *text, *path;

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"snaps\" "
           "currentSnapshot=\"{" SNAP_LAST "}\">\n"
           "<MediaRegistry><HardDisks>\n", uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"a.vdi\" format=\"VDI\">",
           uuid_n (0, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"Snapshots/b.vdi\" "
           "format=\"VDI\"/>", uuid_n (1, u));
  fprintf (t.fp, "</HardDisk></HardDisks></MediaRegistry>\n");
  fprintf (t.fp, "<Snapshot uuid=\"{" SNAP_FIRST "}\" name=\"first\">"
           "<StorageControllers><StorageController name=\"S\">"
           "<AttachedDevice type=\"HardDisk\"><Image uuid=\"%s\"/>"
           "</AttachedDevice></StorageController></StorageControllers>\n"
           "<Snapshots>\n", uuid_n (0, u));
  fprintf (t.fp, "<Snapshot uuid=\"{" SNAP_TWIN1 "}\" name=\"twin\">"
           "<Hardware><StorageControllers><StorageController name=\"S\">"
           "<AttachedDevice type=\"HardDisk\"><Image uuid=\"%s\"/>"
           "</AttachedDevice></StorageController></StorageControllers>"
           "</Hardware></Snapshot>\n", uuid_n (1, u));
  fprintf (t.fp, "<Snapshot uuid=\"{" SNAP_TWIN2 "}\" name=\"twin\">"
           "<Snapshots><Snapshot uuid=\"" SNAP_LAST "\" name=\"last\"/>"
           "</Snapshots></Snapshot>\n");
  fprintf (t.fp, "</Snapshots></Snapshot>\n"
           "<Hardware><StorageControllers><StorageController name=\"S\">"
           "<AttachedDevice type=\"HardDisk\"><Image uuid=\"%s\"/>"
           "</AttachedDevice></StorageController></StorageControllers>"
           "</Hardware></Machine></VirtualBox>\n", uuid_n (1, u));
  text = text_close (&t);
  path = write_text (dir, "snaps.vbox", text);
  free (text);
  return path;
}

static void
test_snapshots (void)
{
  char *dir = make_dir (), *path = make_snapshots (dir);
  struct vbox_registry *reg;
  const struct vbox_machine *m;
  const struct vbox_snapshot *first, *twin1, *twin2, *last;
  char u[40];

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  m = vbox_registry_machine (reg);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT_EQUAL_FATAL (m->nr_snapshots, 4);
  CU_ASSERT_TRUE (m->has_current_snapshot);
  CU_ASSERT_TRUE (uuid_is (&m->current_snapshot, SNAP_LAST));

  /* Document order, with parents. */
  first = &m->snapshots[0];
  twin1 = &m->snapshots[1];
  twin2 = &m->snapshots[2];
  last = &m->snapshots[3];
  CU_ASSERT_STRING_EQUAL (first->name, "first");
  CU_ASSERT_TRUE (uuid_is (&first->uuid, SNAP_FIRST));
  CU_ASSERT_PTR_NULL (first->parent);
  CU_ASSERT_PTR_EQUAL (twin1->parent, first);
  CU_ASSERT_PTR_EQUAL (twin2->parent, first);
  CU_ASSERT_PTR_EQUAL (last->parent, twin2);
  CU_ASSERT_STRING_EQUAL (last->name, "last");

  /* Attachments of each snapshot and of the current state. */
  CU_ASSERT_EQUAL_FATAL (first->nr_disks, 1);
  CU_ASSERT_TRUE (uuid_is (&first->disks[0], uuid_n (0, u)));
  CU_ASSERT_EQUAL_FATAL (twin1->nr_disks, 1);
  CU_ASSERT_TRUE (uuid_is (&twin1->disks[0], uuid_n (1, u)));
  CU_ASSERT_EQUAL (twin2->nr_disks, 0);
  CU_ASSERT_EQUAL_FATAL (m->nr_disks, 1);
  CU_ASSERT_TRUE (uuid_is (&m->disks[0], uuid_n (1, u)));

  /* By name, by UUID in every form. */
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, "first"), first);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, "last"), last);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, SNAP_TWIN1), twin1);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot (m, "{" SNAP_TWIN2 "}"),
                       twin2);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot
                       (m, "{10000000-0000-4000-8000-00000000000A}"), last);
  CU_ASSERT_PTR_EQUAL (vbox_machine_find_snapshot
                       (m, "10000000-0000-4000-8000-00000000000A"), last);
  ASSERT_NO_ERROR ();

  /* A shared name is an error listing both UUIDs. */
  CU_ASSERT_PTR_NULL (vbox_machine_find_snapshot (m, "twin"));
  ASSERT_ONE_ERROR (path, SNAP_TWIN1);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, SNAP_TWIN2));
  test_log_reset ();

  /* Neither a name nor a UUID. */
  CU_ASSERT_PTR_NULL (vbox_machine_find_snapshot (m, "nosuch"));
  ASSERT_ONE_ERROR (path, "no snapshot named");
  test_log_reset ();
  CU_ASSERT_PTR_NULL (vbox_machine_find_snapshot
                      (m, "{10000000-0000-4000-8000-0000000000ff}"));
  ASSERT_ONE_ERROR (path, "no snapshot named");

  vbox_registry_free (reg);
  free (path);
  free (dir);
}

/* Nested snapshots: 250 levels, then one too many. */
static char *
make_snapshot_chain (const char *dir, unsigned depth)
{
  struct text t;
  char u[40], *text, *path;
  unsigned i;

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"deep\">\n", uuid_n (9999, u));
  for (i = 0; i < depth; ++i)
    fprintf (t.fp, "%s<Snapshot uuid=\"%s\" name=\"s%u\">\n",
             i > 0 ? "<Snapshots>" : "", uuid_n (i, u), i);
  for (i = 0; i < depth; ++i)
    fprintf (t.fp, "</Snapshot>%s\n", i < depth - 1 ? "</Snapshots>" : "");
  fprintf (t.fp, "</Machine></VirtualBox>\n");
  text = text_close (&t);
  path = write_text (dir, "deep.vbox", text);
  free (text);
  return path;
}

static void
test_snapshot_depth (void)
{
  char *dir = make_dir (), *path = make_snapshot_chain (dir, 250);
  struct vbox_registry *reg;
  const struct vbox_machine *m;
  const struct vbox_snapshot *s;
  size_t n = 0;

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  m = vbox_registry_machine (reg);
  CU_ASSERT_EQUAL_FATAL (m->nr_snapshots, 250);
  s = vbox_machine_find_snapshot (m, "s249");
  CU_ASSERT_PTR_NOT_NULL_FATAL (s);
  for (; s->parent; s = s->parent)
    n++;
  CU_ASSERT_EQUAL (n, 249);
  CU_ASSERT_STRING_EQUAL (s->name, "s0");
  vbox_registry_free (reg);
  free (path);
  free (dir);

  dir = make_dir ();
  path = make_snapshot_chain (dir, 251);
  CU_ASSERT_PTR_NULL (load_one (path));
  ASSERT_ONE_ERROR (path, "snapshots are nested more than 250 deep");
  free (path);
  free (dir);
}

/* Saved states: a machine's stateFile makes it saved, a snapshot's an
 * online snapshot (an empty attribute is no state, as in VirtualBox);
 * autoReset counts on differencing images only.
 */
static void
test_saved_states (void)
{
  char *dir = make_dir (), *path, *text;
  struct vbox_registry *reg;
  const struct vbox_machine *m;
  struct text t;
  char u[40];

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"saved\" "
           "stateFile=\"Snapshots/2024-05-01T10-00-00-000000000Z.sav\" "
           "currentSnapshot=\"{" SNAP_TWIN1 "}\">\n"
           "<MediaRegistry><HardDisks>\n", uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"a.vdi\" format=\"VDI\" "
           "type=\"Immutable\" autoReset=\"true\">", uuid_n (0, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"Snapshots/b.vdi\" "
           "format=\"VDI\" autoReset=\"true\"/>", uuid_n (1, u));
  fprintf (t.fp, "</HardDisk></HardDisks></MediaRegistry>\n"
           "<Snapshot uuid=\"{" SNAP_FIRST "}\" name=\"off\" stateFile=\"\">"
           "<Snapshots><Snapshot uuid=\"{" SNAP_TWIN1 "}\" name=\"on\" "
           "stateFile=\"Snapshots/{" SNAP_TWIN1 "}.sav\"/></Snapshots>"
           "</Snapshot></Machine></VirtualBox>\n");
  text = text_close (&t);
  path = write_text (dir, "saved.vbox", text);
  free (text);

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  m = vbox_registry_machine (reg);
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT_TRUE (m->saved);
  CU_ASSERT_EQUAL_FATAL (m->nr_snapshots, 2);
  CU_ASSERT_FALSE (m->snapshots[0].online);
  CU_ASSERT_TRUE (m->snapshots[1].online);
  CU_ASSERT_PTR_EQUAL (vbox_machine_current_snapshot (m), &m->snapshots[1]);
  CU_ASSERT_FALSE (find (reg, uuid_n (0, u))->auto_reset);
  CU_ASSERT_TRUE (find (reg, uuid_n (1, u))->auto_reset);
  vbox_registry_free (reg);
  free (path);

  /* No stateFile anywhere. */
  path = make_snapshots (dir);
  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  m = vbox_registry_machine (reg);
  CU_ASSERT_FALSE (m->saved);
  CU_ASSERT_PTR_NOT_NULL_FATAL (vbox_machine_current_snapshot (m));
  CU_ASSERT_FALSE (vbox_machine_current_snapshot (m)->online);
  CU_ASSERT_TRUE (uuid_is (&vbox_machine_current_snapshot (m)->uuid,
                           SNAP_LAST));
  vbox_registry_free (reg);
  free (path);

  /* No current snapshot. */
  path = make_snapshot_chain (dir, 1);
  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  CU_ASSERT_PTR_NULL (vbox_machine_current_snapshot
                      (vbox_registry_machine (reg)));
  vbox_registry_free (reg);
  free (path);
  free (dir);
}

/* VirtualBox.xml and a .vbox in one registry: the union, with the
 * base in both (they agree), a diff only in the .vbox.
 */
static void
test_union (void)
{
  char *dir = make_dir (), *real_dir = real_path (dir);
  char *vm_dir, *global, *machine, *text, *expect;
  struct vbox_registry *reg;
  const struct vbox_medium *base, *diff, *extra;
  struct text t;
  char u[40], u2[40];

  make_subdir (real_dir, "vm");
  vm_dir = path_join (real_dir, "vm");

  vbox_open (&t, INNOTEK_NS);
  fprintf (t.fp, "<Global><MachineRegistry/><MediaRegistry><HardDisks>\n"
           "<HardDisk uuid=\"%s\" location=\"vm/base.vdi\" format=\"VDI\" "
           "type=\"Immutable\"/>\n"
           "<HardDisk uuid=\"%s\" location=\"extra.vdi\" format=\"VDI\"/>\n"
           "</HardDisks><DVDImages/><FloppyImages/></MediaRegistry>"
           "</Global></VirtualBox>\n", uuid_n (0, u), uuid_n (2, u2));
  text = text_close (&t);
  global = write_text (real_dir, "VirtualBox.xml", text);
  free (text);

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"u\"><MediaRegistry>"
           "<HardDisks>\n", uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"base.vdi\" "
           "format=\"VDI\" type=\"Immutable\">", uuid_n (0, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" location=\"Snapshots/diff.vdi\" "
           "format=\"VDI\" autoReset=\"true\"/>", uuid_n (1, u));
  fprintf (t.fp, "</HardDisk></HardDisks></MediaRegistry></Machine>"
           "</VirtualBox>\n");
  text = text_close (&t);
  machine = write_text (vm_dir, "u.vbox", text);
  free (text);

  reg = vbox_registry_new ();
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  CU_ASSERT_EQUAL (vbox_registry_load (reg, global), 0);
  CU_ASSERT_PTR_NULL (vbox_registry_machine (reg));
  CU_ASSERT_EQUAL (vbox_registry_load (reg, machine), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_PTR_NOT_NULL (vbox_registry_machine (reg));

  base = find (reg, uuid_n (0, u));
  diff = find (reg, uuid_n (1, u));
  extra = find (reg, uuid_n (2, u));
  CU_ASSERT_PTR_NOT_NULL_FATAL (base);
  CU_ASSERT_PTR_NOT_NULL_FATAL (diff);
  CU_ASSERT_PTR_NOT_NULL_FATAL (extra);
  CU_ASSERT_PTR_EQUAL (diff->parent, base);
  CU_ASSERT_STRING_EQUAL (diff->type, "Immutable");
  CU_ASSERT_TRUE (diff->auto_reset);
  /* The base keeps the file it was first read from. */
  CU_ASSERT_STRING_EQUAL (base->registry_file, global);
  CU_ASSERT_STRING_EQUAL (diff->registry_file, machine);
  expect = path_join (real_dir, "vm/base.vdi");
  CU_ASSERT_STRING_EQUAL (base->location, expect);
  free (expect);
  expect = path_join (real_dir, "extra.vdi");
  CU_ASSERT_STRING_EQUAL (extra->location, expect);
  free (expect);

  /* The same files again: every medium agrees, but only one machine. */
  CU_ASSERT_EQUAL (vbox_registry_load (reg, global), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (vbox_registry_load (reg, machine), -1);
  ASSERT_ONE_ERROR (machine, "only one .vbox file");

  vbox_registry_free (reg);
  free (global);
  free (machine);
  free (vm_dir);
  free (real_dir);
  free (dir);
}

/* A file that disagrees with one loaded before fails and leaves the
 * registry as it was.
 */
static void
test_union_conflict (void)
{
  char *dir = make_dir (), *real_dir = real_path (dir);
  char *first, *second, *text;
  struct vbox_registry *reg;
  const struct vbox_medium *m;
  struct text t;
  char u[40], u2[40], u3[40];

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Global><MediaRegistry><HardDisks>\n"
           "<HardDisk uuid=\"%s\" location=\"one.vdi\" format=\"VDI\"/>\n"
           "</HardDisks></MediaRegistry></Global></VirtualBox>\n",
           uuid_n (0, u));
  text = text_close (&t);
  first = write_text (real_dir, "VirtualBox.xml", text);
  free (text);

  /* A new medium first, then the conflicting one. */
  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"c\"><MediaRegistry>"
           "<HardDisks>\n"
           "<HardDisk uuid=\"%s\" location=\"new.vdi\" format=\"VDI\"/>\n"
           "<HardDisk uuid=\"%s\" location=\"other.vdi\" format=\"VDI\"/>\n"
           "</HardDisks></MediaRegistry></Machine></VirtualBox>\n",
           uuid_n (100, u), uuid_n (1, u2), uuid_n (0, u3));
  text = text_close (&t);
  second = write_text (real_dir, "c.vbox", text);
  free (text);

  reg = vbox_registry_new ();
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  CU_ASSERT_EQUAL (vbox_registry_load (reg, first), 0);
  CU_ASSERT_EQUAL (vbox_registry_load (reg, second), -1);
  ASSERT_ONE_ERROR (second, "duplicate UUID");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, first));
  /* Unchanged: no machine, no new medium, the old one intact. */
  CU_ASSERT_PTR_NULL (vbox_registry_machine (reg));
  CU_ASSERT_PTR_NULL (find (reg, uuid_n (1, u)));
  m = find (reg, uuid_n (0, u));
  CU_ASSERT_PTR_NOT_NULL_FATAL (m);
  CU_ASSERT_STRING_EQUAL (m->registry_file, first);
  vbox_registry_free (reg);
  free (first);
  free (second);
  free (real_dir);
  free (dir);
}

/* Legacy forms: DiffHardDisk children, VirtualDiskImage@filePath. */
static void
test_legacy_forms (void)
{
  char *dir = make_dir (), *path, *text;
  struct vbox_registry *reg;
  const struct vbox_medium *base, *diff;
  const struct vbox_machine *m;
  struct text t;
  char u[40];

  vbox_open (&t, INNOTEK_NS);
  fprintf (t.fp, "<Machine uuid=\"%s\" name=\"old\"><MediaRegistry>"
           "<HardDisks>\n", uuid_n (100, u));
  fprintf (t.fp, "<HardDisk uuid=\"%s\" type=\"normal\">"
           "<VirtualDiskImage filePath=\"old.vdi\"/>", uuid_n (0, u));
  fprintf (t.fp, "<DiffHardDisk uuid=\"%s\">"
           "<VirtualDiskImage filePath=\"Snapshots/d.vdi\"/></DiffHardDisk>",
           uuid_n (1, u));
  fprintf (t.fp, "</HardDisk></HardDisks></MediaRegistry>\n"
           "<HardDiskAttachments><HardDiskAttachment hardDisk=\"%s\" "
           "bus=\"IDE\" channel=\"0\" device=\"0\"/></HardDiskAttachments>"
           "</Machine></VirtualBox>\n", uuid_n (1, u));
  text = text_close (&t);
  path = write_text (dir, "old.vbox", text);
  free (text);

  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  base = find (reg, uuid_n (0, u));
  diff = find (reg, uuid_n (1, u));
  CU_ASSERT_PTR_NOT_NULL_FATAL (base);
  CU_ASSERT_PTR_NOT_NULL_FATAL (diff);
  CU_ASSERT_STRING_EQUAL (base->format, "VDI");
  CU_ASSERT_STRING_EQUAL (base->type, "Normal");
  CU_ASSERT_STRING_EQUAL (base->location_as_written, "old.vdi");
  CU_ASSERT_PTR_EQUAL (diff->parent, base);
  m = vbox_registry_machine (reg);
  CU_ASSERT_EQUAL_FATAL (m->nr_disks, 1);
  CU_ASSERT_TRUE (vdi_uuid_equal (&m->disks[0], &diff->uuid));
  vbox_registry_free (reg);
  free (path);
  free (dir);
}

/* Hostile and broken inputs.  Each must fail with exactly one error
 * naming the file and containing phrase, print nothing to stderr, and
 * try no external entity.
 */
static unsigned entity_loads;

static xmlParserInputPtr
counting_loader (const char *url __attribute__ ((__unused__)),
                 const char *id __attribute__ ((__unused__)),
                 xmlParserCtxtPtr ctxt __attribute__ ((__unused__)))
{
  entity_loads++;
  return NULL;
}

static void
check_refused (const char *dir, const char *path, const char *phrase)
{
  xmlExternalEntityLoader saved = xmlGetExternalEntityLoader ();
  struct vbox_registry *reg;
  off_t stderr_bytes;

  test_log_reset ();
  entity_loads = 0;
  xmlSetExternalEntityLoader (counting_loader);
  stderr_capture_begin (dir);
  reg = load_one (path);
  stderr_bytes = stderr_capture_end ();
  xmlSetExternalEntityLoader (saved);

  CU_ASSERT_PTR_NULL (reg);
  vbox_registry_free (reg);
  ASSERT_ONE_ERROR (path, phrase);
  /* One line. */
  CU_ASSERT_PTR_NULL (strchr (test_log.last_error, '\n'));
  CU_ASSERT_EQUAL (stderr_bytes, 0);
  CU_ASSERT_EQUAL (entity_loads, 0);
}

static void
check_text_refused (const char *text, const char *phrase)
{
  char *dir = make_dir ();
  char *path = write_text (dir, "hostile.vbox", text);

  check_refused (dir, path, phrase);
  free (path);
  free (dir);
}

#define MACHINE_START \
  "<?xml version=\"1.0\"?>\n" \
  "<VirtualBox xmlns=\"" VBOX_NS "\" version=\"1.19-linux\">\n" \
  "<Machine uuid=\"{00000000-0000-4000-8000-0000000000aa}\" name=\"h\">\n" \
  "<MediaRegistry><HardDisks>\n"
#define MACHINE_END \
  "</HardDisks></MediaRegistry></Machine></VirtualBox>\n"
#define UUID_A "{0000000a-0000-4000-8000-000000000001}"
#define UUID_B "{0000000b-0000-4000-8000-000000000002}"

static void
test_hostile_not_xml (void)
{
  check_text_refused ("This is not XML at all.\n", "not a well-formed XML");
}

static void
test_hostile_binary (void)
{
  static const unsigned char junk[] = {
    0x7f, 0x10, 0xda, 0xbe, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xfe, 0x3c
  };
  char *dir = make_dir ();
  char *path = write_bytes (dir, "junk.vbox", junk, sizeof junk);

  check_refused (dir, path, "not a well-formed XML");
  free (path);
  free (dir);
}

static void
test_hostile_bad_utf8 (void)
{
  check_text_refused ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<VirtualBox><Global name=\"\xff\xfe\"/></VirtualBox>\n",
                      "not proper UTF-8");
}

/* A conversion error that libxml2 raises without the parser context
 * (from iconv): it must not reach stderr either.  The file is UCS-4
 * (big-endian, detected from its first bytes) with the code point
 * 0x110000, which does not exist, in an attribute.
 */
static void
test_hostile_bad_encoding (void)
{
  static const char text[] =
    "<?xml version=\"1.0\"?><VirtualBox><Global a=\"X\"/></VirtualBox>";
  char *dir = make_dir (), *path;
  uint8_t buf[4 * sizeof text];
  size_t i;

  for (i = 0; i < sizeof text - 1; ++i) {
    uint32_t c = text[i] == 'X' ? 0x110000 : (uint8_t) text[i];

    buf[4 * i] = c >> 24;
    buf[4 * i + 1] = c >> 16;
    buf[4 * i + 2] = c >> 8;
    buf[4 * i + 3] = c;
  }
  path = write_bytes (dir, "ucs4.xml", buf, 4 * (sizeof text - 1));
  check_refused (dir, path, "input conversion failed");
  free (path);
  free (dir);
}

/* The thread's own libxml2 error handler is put back after a load. */
static int handler_marker;

#if LIBXML_VERSION >= 21200
#define XML_ERROR_CONST const
#else
#define XML_ERROR_CONST
#endif

static void
marker_handler (void *data __attribute__ ((__unused__)),
                XML_ERROR_CONST xmlError *err __attribute__ ((__unused__)))
{
  handler_marker++;
}

static void
test_error_handler_restored (void)
{
  char *dir = make_dir ();
  char *path = write_text (dir, "bad.xml", "<VirtualBox><Global>");

  handler_marker = 0;
  xmlSetStructuredErrorFunc (&handler_marker, marker_handler);
  check_refused (dir, path, "not a well-formed XML file");
  CU_ASSERT_EQUAL (handler_marker, 0);
  CU_ASSERT_PTR_EQUAL (xmlStructuredErrorContext, &handler_marker);
  CU_ASSERT (xmlStructuredError == marker_handler);
  xmlSetStructuredErrorFunc (NULL, NULL);
  free (path);
  free (dir);
}

static void
test_hostile_truncated (void)
{
  check_text_refused (MACHINE_START "<HardDisk uuid=\"" UUID_A "\" locat",
                      "not a well-formed XML file: line 5");
}

static void
test_hostile_empty (void)
{
  check_text_refused ("", "empty");
}

static void
test_hostile_blank (void)
{
  check_text_refused ("  \n\n", "not a well-formed XML");
}

static void
test_hostile_wrong_root (void)
{
  check_text_refused ("<?xml version=\"1.0\"?>\n<html><body/></html>\n",
                      "the root element is <html>");
}

static void
test_hostile_wrong_namespace (void)
{
  check_text_refused ("<VirtualBox xmlns=\"http://example.com/x\">"
                      "<Global/></VirtualBox>", "namespace");
}

static void
test_hostile_neither (void)
{
  check_text_refused ("<VirtualBox xmlns=\"" VBOX_NS "\"/>",
                      "neither <Machine>");
}

static void
test_hostile_external_entity (void)
{
  check_text_refused ("<?xml version=\"1.0\"?>\n"
                      "<!DOCTYPE x [<!ENTITY e SYSTEM "
                      "\"file:///etc/passwd\">]>\n"
                      "<VirtualBox><Global>&e;</Global></VirtualBox>\n",
                      "DTDs and entities are not allowed");
}

static void
test_hostile_external_dtd (void)
{
  check_text_refused ("<?xml version=\"1.0\"?>\n"
                      "<!DOCTYPE VirtualBox SYSTEM "
                      "\"http://192.0.2.1/VirtualBox.dtd\">\n"
                      "<VirtualBox><Global/></VirtualBox>\n",
                      "DTDs and entities are not allowed");
}

static void
test_hostile_public_dtd (void)
{
  check_text_refused ("<!DOCTYPE VirtualBox PUBLIC \"-//X//DTD X//EN\" "
                      "\"http://192.0.2.1/x.dtd\"><VirtualBox/>",
                      "DTDs and entities are not allowed");
}

static void
test_hostile_parameter_entity (void)
{
  check_text_refused ("<!DOCTYPE x [<!ENTITY % p SYSTEM "
                      "\"http://192.0.2.1/p.dtd\"> %p;]><VirtualBox/>",
                      "DTDs and entities are not allowed");
}

/* The parser stops at the DOCTYPE: what follows is never read. */
static void
test_hostile_doctype_stops_parser (void)
{
  check_text_refused ("<!DOCTYPE VirtualBox [ <!ENTITY % x SYSTEM "
                      "\"file:///etc/passwd\"> %x; <!ELEMENT",
                      "DTDs and entities are not allowed");
}

static void
test_hostile_billion_laughs (void)
{
  struct text t;
  struct timespec start, end;
  double seconds;
  char *text;
  int i;

  text_open (&t);
  fprintf (t.fp, "<?xml version=\"1.0\"?>\n<!DOCTYPE VirtualBox [\n"
           "<!ENTITY lol0 \"lol\">\n");
  for (i = 1; i < 10; ++i)
    fprintf (t.fp, "<!ENTITY lol%d \"&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;"
             "&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;\">\n",
             i, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1,
             i - 1);
  fprintf (t.fp, "]>\n<VirtualBox><Global>&lol9;</Global></VirtualBox>\n");
  text = text_close (&t);

  clock_gettime (CLOCK_MONOTONIC, &start);
  check_text_refused (text, "DTDs and entities are not allowed");
  clock_gettime (CLOCK_MONOTONIC, &end);
  seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
  CU_ASSERT (seconds < 1.0);
  free (text);
}

/* An undeclared entity without any DTD. */
static void
test_hostile_undefined_entity (void)
{
  check_text_refused ("<VirtualBox><Global>&e;</Global></VirtualBox>",
                      "not a well-formed XML");
}

static void
test_hostile_deep_elements (void)
{
  struct text t;
  struct timespec start, end;
  double seconds;
  char *text;
  int i;

  vbox_open (&t, VBOX_NS);
  fprintf (t.fp, "<Global>");
  for (i = 0; i < 100000; ++i)
    fputs ("<a>", t.fp);
  for (i = 0; i < 100000; ++i)
    fputs ("</a>", t.fp);
  fprintf (t.fp, "</Global></VirtualBox>\n");
  text = text_close (&t);

  clock_gettime (CLOCK_MONOTONIC, &start);
  check_text_refused (text, "elements are nested more than 1024 deep");
  clock_gettime (CLOCK_MONOTONIC, &end);
  seconds = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
  CU_ASSERT (seconds < 5.0);
  free (text);
}

static void
test_hostile_missing_uuid (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk location=\"a.vdi\" format=\"VDI\"/>\n"
                      MACHINE_END, "<HardDisk> has no uuid attribute");
}

static void
test_hostile_missing_location (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" format=\"VDI\"/>\n"
                      MACHINE_END, "has no location attribute");
}

static void
test_hostile_missing_format (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\">\n"
                      "<HardDisk uuid=\"" UUID_B "\" location=\"b.vdi\"/>\n"
                      "</HardDisk>\n" MACHINE_END,
                      "line 6: <HardDisk> {0000000b");
}

static void
test_hostile_missing_machine_uuid (void)
{
  check_text_refused ("<VirtualBox><Machine name=\"x\"/></VirtualBox>",
                      "<Machine> has no uuid attribute");
}

static void
test_hostile_missing_image_uuid (void)
{
  check_text_refused ("<VirtualBox><Machine uuid=\"" UUID_A "\" name=\"x\">"
                      "<StorageControllers><StorageController>"
                      "<AttachedDevice type=\"HardDisk\"><Image/>"
                      "</AttachedDevice></StorageController>"
                      "</StorageControllers></Machine></VirtualBox>",
                      "<Image> has no uuid attribute");
}

static void
test_hostile_duplicate_location (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\"/>\n"
                      "<HardDisk uuid=\"" UUID_A "\" location=\"b.vdi\" "
                      "format=\"VDI\"/>\n" MACHINE_END,
                      "duplicate UUID {0000000a-0000-4000-8000-000000000001}");
}

static void
test_hostile_duplicate_parent (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\"/>\n"
                      "<HardDisk uuid=\"" UUID_B "\" location=\"b.vdi\" "
                      "format=\"VDI\">\n"
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\"/></HardDisk>\n" MACHINE_END,
                      "duplicate UUID");
}

/* The same medium twice with the same location and parent is fine. */
static void
test_duplicate_agreeing (void)
{
  char *dir = make_dir ();
  char *path = write_text (dir, "dup.vbox", MACHINE_START
                           "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                           "format=\"VDI\"/>\n"
                           "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                           "format=\"VDI\"><HardDisk uuid=\"" UUID_B "\" "
                           "location=\"b.vdi\" format=\"VDI\"/></HardDisk>\n"
                           MACHINE_END);
  struct vbox_registry *reg = load_one (path);
  const struct vbox_medium *a, *b;

  CU_ASSERT_PTR_NOT_NULL_FATAL (reg);
  ASSERT_NO_ERROR ();
  a = find (reg, UUID_A);
  b = find (reg, UUID_B);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT_PTR_EQUAL (b->parent, a);
  vbox_registry_free (reg);
  free (path);
  free (dir);
}

static void
test_hostile_null_uuid (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"{00000000-0000-0000-0000-000000000000}"
                      "\" location=\"a.vdi\" format=\"VDI\"/>\n" MACHINE_END,
                      "null UUID");
}

static void
test_hostile_malformed_uuid (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk "
                      "uuid=\"{0000000a-0000-4000-8000-00000000000}\" "
                      "location=\"a.vdi\" format=\"VDI\"/>\n" MACHINE_END,
                      "malformed UUID");
}

static void
test_hostile_malformed_current_snapshot (void)
{
  check_text_refused ("<VirtualBox><Machine uuid=\"" UUID_A "\" name=\"x\" "
                      "currentSnapshot=\"last\"/></VirtualBox>",
                      "malformed UUID \"last\"");
}

static void
test_hostile_unknown_current_snapshot (void)
{
  check_text_refused ("<VirtualBox><Machine uuid=\"" UUID_A "\" name=\"x\" "
                      "currentSnapshot=\"" UUID_B "\"/></VirtualBox>",
                      "is not one of its snapshots");
}

static void
test_hostile_duplicate_snapshot (void)
{
  check_text_refused ("<VirtualBox><Machine uuid=\"" UUID_A "\" name=\"x\">"
                      "<Snapshot uuid=\"" UUID_B "\" name=\"s\"><Snapshots>"
                      "<Snapshot uuid=\"" UUID_B "\" name=\"t\"/>"
                      "</Snapshots></Snapshot></Machine></VirtualBox>",
                      "duplicate snapshot UUID");
}

static void
test_hostile_bad_type (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\" type=\"Mutable\"/>\n" MACHINE_END,
                      "type \"Mutable\"");
}

static void
test_hostile_bad_auto_reset (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a.vdi\" "
                      "format=\"VDI\" autoReset=\"maybe\"/>\n" MACHINE_END,
                      "autoReset \"maybe\"");
}

static void
test_hostile_newline_in_message (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"x&#10;y\" location=\"a.vdi\" "
                      "format=\"VDI\"/>\n" MACHINE_END,
                      "malformed UUID \"x?y\"");
}

static void
test_hostile_newline_in_location (void)
{
  check_text_refused (MACHINE_START
                      "<HardDisk uuid=\"" UUID_A "\" location=\"a&#10;.vdi\" "
                      "format=\"VDI\"/>\n"
                      "<HardDisk uuid=\"" UUID_A "\" location=\"b.vdi\" "
                      "format=\"VDI\"/>\n" MACHINE_END,
                      "a?.vdi");
}

static void
test_hostile_too_large (void)
{
  char *dir = make_dir ();
  char *path = write_text (dir, "huge.vbox", "<VirtualBox>");

  CU_ASSERT_EQUAL_FATAL (truncate (path, 64 * 1024 * 1024 + 1), 0);
  check_refused (dir, path, "too large");
  free (path);
  free (dir);
}

static void
test_hostile_not_regular (void)
{
  char *dir = make_dir ();

  check_refused (dir, dir, "not a regular file (a folder)");
  free (dir);
}

static void
test_hostile_fifo (void)
{
  char *dir = make_dir ();
  char *path = path_join (dir, "fifo.vbox");

  CU_ASSERT_EQUAL_FATAL (mkfifo (path, 0600), 0);
  check_refused (dir, path, "not a regular file (a FIFO)");
  free (path);
  free (dir);
}

static void
test_hostile_missing_file (void)
{
  char *dir = make_dir ();
  char *path = path_join (dir, "nonexistent.vbox");

  check_refused (dir, path, "No such file");
  free (path);
  free (dir);
}

/* The size bound itself: a file just under it is read. */
static void
test_size_bound_accepts (void)
{
  char *dir = make_dir ();
  static const char head[] = "<VirtualBox><Global><!--";
  static const char tail[] = "--></Global></VirtualBox>";
  const size_t size = 64 * 1024 * 1024;
  char *buf = malloc (size), *path;
  struct vbox_registry *reg;

  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  memset (buf, 'x', size);
  memcpy (buf, head, strlen (head));
  memcpy (buf + size - strlen (tail), tail, strlen (tail));
  path = write_bytes (dir, "big.xml", buf, size);
  free (buf);
  reg = load_one (path);
  CU_ASSERT_PTR_NOT_NULL (reg);
  ASSERT_NO_ERROR ();
  vbox_registry_free (reg);
  unlink (path);
  free (path);
  free (dir);
}

int
main (void)
{
  CU_pSuite s = test_init ("vbox-registry");

  ADD_TEST (s, test_real_genymotion);
  ADD_TEST (s, test_real_linux_vm);
  ADD_TEST (s, test_real_global);
  ADD_TEST (s, test_real_union);
  ADD_TEST (s, test_nesting_depths);
  ADD_TEST (s, test_nesting_too_deep);
  ADD_TEST (s, test_locations);
  ADD_TEST (s, test_find_location);
  ADD_TEST (s, test_controllers_under_machine);
  ADD_TEST (s, test_controllers_under_hardware);
  ADD_TEST (s, test_no_namespace);
  ADD_TEST (s, test_snapshots);
  ADD_TEST (s, test_snapshot_depth);
  ADD_TEST (s, test_saved_states);
  ADD_TEST (s, test_union);
  ADD_TEST (s, test_union_conflict);
  ADD_TEST (s, test_legacy_forms);
  ADD_TEST (s, test_duplicate_agreeing);
  ADD_TEST (s, test_hostile_not_xml);
  ADD_TEST (s, test_hostile_binary);
  ADD_TEST (s, test_hostile_bad_utf8);
  ADD_TEST (s, test_hostile_bad_encoding);
  ADD_TEST (s, test_error_handler_restored);
  ADD_TEST (s, test_hostile_truncated);
  ADD_TEST (s, test_hostile_empty);
  ADD_TEST (s, test_hostile_blank);
  ADD_TEST (s, test_hostile_wrong_root);
  ADD_TEST (s, test_hostile_wrong_namespace);
  ADD_TEST (s, test_hostile_neither);
  ADD_TEST (s, test_hostile_external_entity);
  ADD_TEST (s, test_hostile_external_dtd);
  ADD_TEST (s, test_hostile_public_dtd);
  ADD_TEST (s, test_hostile_parameter_entity);
  ADD_TEST (s, test_hostile_doctype_stops_parser);
  ADD_TEST (s, test_hostile_billion_laughs);
  ADD_TEST (s, test_hostile_undefined_entity);
  ADD_TEST (s, test_hostile_deep_elements);
  ADD_TEST (s, test_hostile_missing_uuid);
  ADD_TEST (s, test_hostile_missing_location);
  ADD_TEST (s, test_hostile_missing_format);
  ADD_TEST (s, test_hostile_missing_machine_uuid);
  ADD_TEST (s, test_hostile_missing_image_uuid);
  ADD_TEST (s, test_hostile_duplicate_location);
  ADD_TEST (s, test_hostile_duplicate_parent);
  ADD_TEST (s, test_hostile_null_uuid);
  ADD_TEST (s, test_hostile_malformed_uuid);
  ADD_TEST (s, test_hostile_malformed_current_snapshot);
  ADD_TEST (s, test_hostile_unknown_current_snapshot);
  ADD_TEST (s, test_hostile_duplicate_snapshot);
  ADD_TEST (s, test_hostile_bad_type);
  ADD_TEST (s, test_hostile_bad_auto_reset);
  ADD_TEST (s, test_hostile_newline_in_message);
  ADD_TEST (s, test_hostile_newline_in_location);
  ADD_TEST (s, test_hostile_too_large);
  ADD_TEST (s, test_hostile_not_regular);
  ADD_TEST (s, test_hostile_fifo);
  ADD_TEST (s, test_hostile_missing_file);
  ADD_TEST (s, test_size_bound_accepts);
  return test_run ();
}
