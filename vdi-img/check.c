/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img check: libvdi's structural check of each image, with the
 * exit status of "qemu-img check".
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

/* The exit status of qemu-img check. */
enum check_status {
  CHECK_CLEAN = 0,
  CHECK_NOT_COMPLETED = 1,      /* the image does not open */
  CHECK_ERRORS = 2,             /* vdi_image_check found problems */
  CHECK_LEAKS = 3,              /* only leaked slots */
};

/* For several images the worst status wins: an image that could not
 * be checked, then errors, then leaks.
 */
static int
severity (enum check_status s)
{
  switch (s) {
  case CHECK_CLEAN: return 0;
  case CHECK_LEAKS: return 1;
  case CHECK_ERRORS: return 2;
  case CHECK_NOT_COMPLETED: return 3;
  }
  abort ();
}

static const char *
plural (uint64_t n, const char *one, const char *many)
{
  return n == 1 ? one : many;
}

/* Check one image; the summary goes to stdout, libvdi's messages
 * about each problem to stderr.
 */
static enum check_status
check_image (const char *filename)
{
  struct vdi_image *img;
  unsigned errors;
  uint32_t leaked;
  int r;

  img = vdi_image_open (filename, 0);
  if (img == NULL) {
    printf ("%s: the image could not be checked.\n", filename);
    return CHECK_NOT_COMPLETED;
  }
  errors = error_count;
  r = vdi_image_check (img);
  errors = error_count - errors;
  leaked = vdi_image_leaked_slots (img);
  vdi_image_close (img);

  if (r == -1) {
    if (errors == 0)            /* vdi_image_check always says why */
      errors = 1;
    printf ("%s: %u %s found on the image", filename, errors,
            plural (errors, "error was", "errors were"));
    if (leaked > 0)
      printf (", and %" PRIu32 " leaked %s", leaked,
              plural (leaked, "slot", "slots"));
    printf (".\n");
    return CHECK_ERRORS;
  }
  if (leaked > 0) {
    printf ("%s: %" PRIu32 " leaked %s found on the image; "
            "this wastes space but does no harm to data.\n", filename,
            leaked, plural (leaked, "slot was", "slots were"));
    return CHECK_LEAKS;
  }
  printf ("%s: no errors were found on the image.\n", filename);
  return CHECK_CLEAN;
}

static int
check_run (int argc, char *argv[])
{
  static const char short_options[] = "hv";
  static const struct option long_options[] = {
    { "help",    no_argument, NULL, 'h' },
    { "verbose", no_argument, NULL, 'v' },
    { NULL }
  };
  enum check_status status = CHECK_CLEAN;
  int c, i;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1)
    command_common_option (&check_command, c);
  if (optind >= argc)
    usage_error (&check_command, "expected at least one IMAGE");

  for (i = optind; i < argc; ++i) {
    const enum check_status s = check_image (argv[i]);

    if (severity (s) > severity (status))
      status = s;
  }
  if (fflush (stdout) == EOF) {
    perror ("vdi-img: stdout");
    return CHECK_NOT_COMPLETED;
  }
  return status;
}

const struct command check_command = {
  .name = "check",
  .synopsis = "check IMAGE...",
  .summary = "Check the structure of each IMAGE, as after a crash.",
  .help =
  "Options:\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "Exit status (the worst of all images):\n"
  "  0  no errors were found\n"
  "  1  the check could not be completed: the image does not open\n"
  "  2  errors were found\n"
  "  3  only leaked slots were found (harmless: a crash between an\n"
  "     allocation and the next flush leaves them)\n",
  .run = check_run,
};
