/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img resize: grow (or, with --shrink, shrink) a dynamic or
 * differencing image offline.  The work is libvdi's (vdi_resize);
 * this is the command line around it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <getopt.h>

#include "libvdi.h"

#include "vdi-img.h"

enum {
  SHRINK_OPTION = 256,
};

/* A size in bytes, or with a binary suffix K, M, G, T or P as
 * qemu-img takes it.  Returns -1 if s is not one.
 */
static int
parse_size (const char *s, uint64_t *size)
{
  static const char suffixes[] = "KMGTP";
  const char *p;
  char *end;
  unsigned long long n;
  unsigned shift = 0;

  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  n = strtoull (s, &end, 10);
  if (errno != 0)
    return -1;
  if (*end != '\0') {
    p = strchr (suffixes, *end);
    if (p == NULL || end[1] != '\0')
      return -1;
    shift = 10 * (p - suffixes + 1);
    if (n > UINT64_MAX >> shift)
      return -1;
  }
  *size = (uint64_t) n << shift;
  return 0;
}

static int
resize_run (int argc, char *argv[])
{
  static const char short_options[] = "hv";
  static const struct option long_options[] = {
    { "help",    no_argument, NULL, 'h' },
    { "shrink",  no_argument, NULL, SHRINK_OPTION },
    { "verbose", no_argument, NULL, 'v' },
    { NULL }
  };
  bool shrink = false;
  uint64_t size;
  int c;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    if (c == SHRINK_OPTION)
      shrink = true;
    else
      command_common_option (&resize_command, c);
  }
  if (optind != argc - 2)
    usage_error (&resize_command, "expected IMAGE and SIZE, got %d "
                 "arguments", argc - optind);
  if (parse_size (argv[optind + 1], &size) == -1)
    usage_error (&resize_command, "%s: not a size (bytes, or a number "
                 "with K, M, G, T or P)", argv[optind + 1]);

  return vdi_resize (argv[optind], size, shrink) == -1
    ? EXIT_FAILURE : EXIT_SUCCESS;
}

const struct command resize_command = {
  .name = "resize",
  .synopsis = "resize [--shrink] IMAGE SIZE",
  .summary = "Change the disk size of the dynamic or differencing "
  "image IMAGE.",
  .help =
  "Options:\n"
  "  --shrink            Allow a smaller SIZE; refused anyway if IMAGE\n"
  "                      holds data past it.\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "SIZE is in bytes, or with a suffix K, M, G, T or P (powers of 1024);\n"
  "a multiple of 512, at least 1M.  Fixed images are not resized.\n"
  "Exit status: 0 on success, 1 on failure.\n",
  .run = resize_run,
};
