/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* UUIDs.  VirtualBox stores an RTUUID as-is, which is the Microsoft
 * GUID layout: time_low (4 bytes), time_mid (2) and time_hi (2) are
 * little-endian, bytes 8-15 are in text order.  struct vdi_uuid keeps
 * the text order so that comparing with the XML registry is memcmp.
 */

#include <config.h>

#include <stdio.h>
#include <string.h>
#include <ctype.h>
#include <sys/random.h>

#include "vdi-internal.h"

/* Which disk byte holds text byte i; the map is its own inverse. */
static const unsigned guid_order[16] = {
  3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
};

void
vdi_uuid_from_disk (struct vdi_uuid *uuid, const uint8_t disk[16])
{
  unsigned i;

  for (i = 0; i < 16; ++i)
    uuid->bytes[i] = disk[guid_order[i]];
}

void
vdi_uuid_to_disk (const struct vdi_uuid *uuid, uint8_t disk[16])
{
  unsigned i;

  for (i = 0; i < 16; ++i)
    disk[guid_order[i]] = uuid->bytes[i];
}

static int
hex_value (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  c = tolower ((unsigned char) c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int
vdi_uuid_parse (const char *text, struct vdi_uuid *uuid)
{
  size_t len = strlen (text);
  bool braces = len > 0 && text[0] == '{';
  unsigned i, pos;

  if (braces) {
    if (len != 38 || text[37] != '}')
      return -1;
    text++;
  }
  else if (len != 36)
    return -1;

  for (i = 0, pos = 0; i < 16; ++i) {
    int hi, lo;

    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
      if (text[pos] != '-')
        return -1;
      pos++;
    }
    hi = hex_value (text[pos]);
    lo = hex_value (text[pos + 1]);
    if (hi < 0 || lo < 0)
      return -1;
    uuid->bytes[i] = hi << 4 | lo;
    pos += 2;
  }
  return 0;
}

char *
vdi_uuid_format (const struct vdi_uuid *uuid, char *buf)
{
  const uint8_t *b = uuid->bytes;

  snprintf (buf, VDI_UUID_STRLEN,
            "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
            "%02x%02x%02x%02x%02x%02x",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
            b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return buf;
}

bool
vdi_uuid_is_null (const struct vdi_uuid *uuid)
{
  static const struct vdi_uuid null_uuid;

  return vdi_uuid_equal (uuid, &null_uuid);
}

bool
vdi_uuid_equal (const struct vdi_uuid *a, const struct vdi_uuid *b)
{
  return memcmp (a->bytes, b->bytes, sizeof a->bytes) == 0;
}

int
vdi_uuid_generate (struct vdi_uuid *uuid)
{
  if (getrandom (uuid->bytes, sizeof uuid->bytes, 0) !=
      (ssize_t) sizeof uuid->bytes) {
    vdi_error ("getrandom: %m");
    return -1;
  }
  /* RFC 4122 version 4, variant 1, as RTUuidCreate makes them. */
  uuid->bytes[6] = (uuid->bytes[6] & 0x0f) | 0x40;
  uuid->bytes[8] = (uuid->bytes[8] & 0x3f) | 0x80;
  return 0;
}
