/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-check IMAGE...: the structural check of libvdi on each image
 * (header, block map, allocation counter, file size), for the tests.
 * Exits 0 if every image is clean, 1 otherwise; the problems are
 * printed one per line on stderr.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>

#include "libvdi.h"

int
main (int argc, char *argv[])
{
  int i, status = EXIT_SUCCESS;

  if (argc < 2) {
    fprintf (stderr, "usage: vdi-check IMAGE.vdi...\n");
    exit (EXIT_FAILURE);
  }
  for (i = 1; i < argc; ++i) {
    struct vdi_image *img = vdi_image_open (argv[i], 0);

    if (img == NULL || vdi_image_check (img) == -1)
      status = EXIT_FAILURE;
    vdi_image_close (img);
  }
  exit (status);
}
