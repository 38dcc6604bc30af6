/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A stress test of the write engine (vdi-write.c) under concurrency,
 * the way nbdkit's threads call it: several threads write, zero,
 * trim, read, query extents and flush at once, through the public
 * API, into a chain (a base with data, zero and free blocks under an
 * empty differencing top) and into a differencing layer alone (the
 * vdidiff filter's case), both over a slow disk below.
 *
 * Each thread owns a region of blocks, where its reads must show
 * exactly what its model says.  All threads also write into shared
 * blocks, each byte always with the same value, so that only the
 * allocations race: every read there shows, byte by byte, what was
 * there before or that value, and in the end every byte that any
 * thread wrote has it.  First come rounds that start all threads at
 * once with a write into the same block, which nobody has written
 * yet, so that they find it being allocated; then requests at random.
 * Afterwards the top image checks clean, with no leaked slot, and
 * shows the model, before and after being opened again; the base did
 * not change.
 *
 * In the build configured with --enable-sanitizers=thread
 * (ThreadSanitizer), any data race fails the test (its exit status
 * becomes 66); with --enable-sanitizers=address any memory error or
 * leak does.  $TEST_SEED chooses the requests.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdbool.h>
#include <inttypes.h>
#include <string.h>
#include <errno.h>
#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <CUnit/Basic.h>

#include "bits.h"

#include "libvdi.h"
#include "test-common.h"

#define KiB 1024
#define BS (128 * KiB)          /* the smallest block size */

#define THREADS 4
#define OWN_BLOCKS 3
/* In each round, every thread first writes into the same shared
 * block, which no one has written yet, then makes requests at
 * random; then come more requests at random.  Half of the shared
 * blocks are left for those.
 */
#define ROUNDS 16
#define REQUESTS_A_ROUND 4
#define REQUESTS 150
#define SHARED_BLOCKS (2 * ROUNDS)
#define BLOCKS (THREADS * OWN_BLOCKS + SHARED_BLOCKS)
#define SIZE ((uint64_t) BLOCKS * BS)
#define SHARED_START ((uint64_t) THREADS * OWN_BLOCKS * BS)
#define SHARED_SIZE ((uint64_t) SHARED_BLOCKS * BS)
#define MAX_REQUEST (2 * BS)     /* across a block boundary or two */

/* ThreadSanitizer takes a write to a file descriptor followed by a
 * read of it as ordering the two threads (io_sync=1), and every
 * request here reads or writes the image: that would hide every race
 * on the engine's memory.  (Called by ThreadSanitizer only.)
 */
const char *__tsan_default_options (void);
const char *
__tsan_default_options (void)
{
  return "io_sync=0";
}

/* What the guest saw before the threads started, and what the shared
 * blocks are written with.
 */
static uint8_t initial[SIZE];

static uint8_t
shared_byte (uint64_t offset)
{
  return (uint8_t) (offset * 13 + (offset >> 10)) | 0x80;
}

/* Below the layer: a pattern of the offset, never zero. */
static uint8_t
below_byte (uint64_t offset)
{
  return (uint8_t) ((offset * 7) ^ (offset >> 9)) | 1;
}

/* A slow disk, as the plugin below the vdidiff filter may be: the
 * other threads come to a block while it is being allocated.
 */
static int
below_pread (void *opaque, void *buf, uint32_t count, uint64_t offset)
{
  const struct timespec delay = { 0, 200000 };
  uint8_t *p = buf;
  uint32_t i;

  nanosleep (&delay, NULL);
  for (i = 0; i < count; ++i)
    p[i] = below_byte (offset + i);
  return 0;
}

static const struct vdi_below pattern_below = { below_pread, NULL };

/* The library's log, from any thread: test-common's capture is not
 * meant for threads.
 */
static unsigned errors;

static void
stress_log (enum vdi_log_level level, const char *msg)
{
  if (level == VDI_LOG_DEBUG)
    return;
  __atomic_add_fetch (&errors, 1, __ATOMIC_RELAXED);
  fprintf (stderr, "libvdi: %s\n", msg);
}

/* A barrier that lets the threads go at the same instant, as far as
 * can be: a pthread barrier wakes them one after the other, and the
 * first has often allocated its block before the next one runs.
 */
struct round {
  unsigned arrived;
  unsigned number;
};

static void
start_round (struct round *r)
{
  const unsigned number = __atomic_load_n (&r->number, __ATOMIC_ACQUIRE);

  if (__atomic_add_fetch (&r->arrived, 1, __ATOMIC_ACQ_REL) == THREADS) {
    __atomic_store_n (&r->arrived, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch (&r->number, 1, __ATOMIC_RELEASE);
  }
  else
    while (__atomic_load_n (&r->number, __ATOMIC_ACQUIRE) == number)
      sched_yield ();
}

struct worker {
  pthread_t thread;
  struct round *round;
  unsigned index;
  struct vdi_chain *chain;
  uint64_t rng;
  uint64_t start;               /* of its region */
  uint8_t model[OWN_BLOCKS * BS];
  uint8_t written[SHARED_SIZE / 8]; /* bits: the shared bytes it wrote */
  uint8_t buf[MAX_REQUEST];
  char failure[256];            /* the first, for the main thread */
};

/* xorshift64*, one a thread. */
static uint64_t
next_random (struct worker *w)
{
  w->rng ^= w->rng >> 12;
  w->rng ^= w->rng << 25;
  w->rng ^= w->rng >> 27;
  return w->rng * UINT64_C (0x2545f4914f6cdd1d);
}

static uint64_t
random_below (struct worker *w, uint64_t n)
{
  return next_random (w) % n;
}

static void
fail (struct worker *w, const char *what, uint64_t offset, uint64_t count)
{
  if (w->failure[0] == '\0')
    snprintf (w->failure, sizeof w->failure,
              "thread %u: %s at %" PRIu64 "+%" PRIu64 ": %s",
              w->index, what, offset, count, strerror (errno));
}

/* A request in the region: whole blocks a time in four, else any
 * range, across blocks too.
 */
static void
choose_range (struct worker *w, uint64_t *offset, uint32_t *count)
{
  const uint64_t size = OWN_BLOCKS * BS;
  uint64_t o, n;

  if (random_below (w, 4) == 0) {
    o = random_below (w, OWN_BLOCKS) * BS;
    n = (1 + random_below (w, 2)) * BS;
  }
  else {
    o = random_below (w, size);
    n = 1 + random_below (w, MAX_REQUEST);
  }
  if (n > size - o)
    n = size - o;
  *offset = o;
  *count = n;
}

static void
own_write (struct worker *w, uint64_t o, uint32_t n)
{
  const unsigned flags = random_below (w, 16) == 0 ? VDI_WRITE_FUA : 0;
  uint32_t i;

  /* Zeros a time in four: a whole block of them allocates nothing. */
  if (random_below (w, 4) == 0)
    memset (w->buf, 0, n);
  else
    for (i = 0; i < n; ++i)
      w->buf[i] = next_random (w);
  if (vdi_chain_pwrite (w->chain, w->buf, n, w->start + o, flags,
                        &pattern_below) == -1)
    fail (w, "write", w->start + o, n);
  memcpy (w->model + o, w->buf, n);
}

static void
own_zero (struct worker *w, uint64_t o, uint32_t n, unsigned flags)
{
  if (vdi_chain_zero (w->chain, n, w->start + o, flags,
                      &pattern_below) == -1) {
    if ((flags & VDI_ZERO_FAST) && errno == ENOTSUP)
      return;                   /* nothing changed */
    fail (w, "zero", w->start + o, n);
  }
  memset (w->model + o, 0, n);
}

static void
own_read (struct worker *w, uint64_t o, uint32_t n)
{
  if (vdi_chain_pread (w->chain, w->buf, n, w->start + o,
                       &pattern_below) == -1)
    fail (w, "read", w->start + o, n);
  else if (memcmp (w->buf, w->model + o, n) != 0)
    fail (w, "read shows other data than written", w->start + o, n);
}

struct extent_check {
  struct worker *w;
  uint64_t next;
  bool bad;
};

static int
check_extent (void *opaque, uint64_t offset, uint64_t length,
              enum vdi_extent_type type)
{
  struct extent_check *c = opaque;
  const uint64_t start = c->w->start;
  uint64_t i;

  if (offset != c->next || length == 0)
    c->bad = true;
  c->next = offset + length;
  for (i = offset; i < offset + length; ++i) {
    if (type == VDI_EXTENT_ZERO)
      c->bad |= c->w->model[i - start] != 0;
    else if (type == VDI_EXTENT_BELOW)
      c->bad |= c->w->model[i - start] != below_byte (i);
  }
  return 0;
}

static void
own_extents (struct worker *w, uint64_t o, uint32_t n)
{
  struct extent_check c = { w, w->start + o, false };

  if (vdi_chain_extents (w->chain, w->start + o, n, false,
                         check_extent, &c) == -1 ||
      c.bad || c.next != w->start + o + n)
    fail (w, "extents that contradict the data", w->start + o, n);
}

/* Write into the shared block b, from a random byte on. */
static void
shared_write (struct worker *w, uint32_t b)
{
  const uint64_t o = (uint64_t) b * BS + random_below (w, BS);
  const uint32_t n = 1 + random_below (w, SHARED_SIZE - o < BS / 2
                                       ? SHARED_SIZE - o : BS / 2);
  uint32_t i;

  for (i = 0; i < n; ++i) {
    w->buf[i] = shared_byte (SHARED_START + o + i);
    bit_set (w->written, o + i);
  }
  if (vdi_chain_pwrite (w->chain, w->buf, n, SHARED_START + o, 0,
                        &pattern_below) == -1)
    fail (w, "shared write", SHARED_START + o, n);
}

static void
shared_read (struct worker *w)
{
  const uint64_t o = SHARED_START + random_below (w, SHARED_SIZE - BS);
  uint32_t i;

  if (vdi_chain_pread (w->chain, w->buf, BS, o, &pattern_below) == -1) {
    fail (w, "shared read", o, BS);
    return;
  }
  for (i = 0; i < BS; ++i)
    if (w->buf[i] != initial[o + i] && w->buf[i] != shared_byte (o + i)) {
      fail (w, "shared read shows a byte nobody wrote", o + i, 1);
      return;
    }
}

/* Few flushes: each takes the chain's lock, which orders what the
 * threads did before it, and ThreadSanitizer sees only the accesses
 * that nothing orders.
 */
static void
random_request (struct worker *w)
{
  const unsigned dice = random_below (w, 100);
  uint64_t o;
  uint32_t n;

  choose_range (w, &o, &n);
  if (dice < 30)
    own_write (w, o, n);
  else if (dice < 38)
    own_zero (w, o, n, 0);
  else if (dice < 41)
    own_zero (w, o, n, VDI_ZERO_FAST);
  else if (dice < 46)           /* trim, as the vdi plugin does */
    own_zero (w, o, n, random_below (w, 2) ? VDI_WRITE_FUA : 0);
  else if (dice < 58)
    own_read (w, o, n);
  else if (dice < 63)
    own_extents (w, o, n);
  else if (dice < 65) {
    if (vdi_chain_flush (w->chain) == -1)
      fail (w, "flush", 0, 0);
  }
  else if (dice < 82)
    shared_write (w, random_below (w, SHARED_BLOCKS));
  else
    shared_read (w);
}

/* First the rounds, then requests at random with no barrier: a
 * barrier orders everything before it too.  On failure a thread goes
 * on, so that the others do not wait for it at the next round.
 */
static void *
work (void *arg)
{
  struct worker *w = arg;
  unsigned round, r;

  for (round = 0; round < ROUNDS; ++round) {
    start_round (w->round);
    shared_write (w, round);
    for (r = 0; r < REQUESTS_A_ROUND; ++r)
      random_request (w);
  }
  for (r = 0; r < REQUESTS; ++r)
    random_request (w);
  return NULL;
}

/* The whole disk as the model says. */
static void
expected_disk (const struct worker *workers, uint8_t *disk)
{
  uint64_t i;
  unsigned t;

  for (t = 0; t < THREADS; ++t)
    memcpy (disk + workers[t].start, workers[t].model, OWN_BLOCKS * BS);
  for (i = 0; i < SHARED_SIZE; ++i) {
    disk[SHARED_START + i] = initial[SHARED_START + i];
    for (t = 0; t < THREADS; ++t)
      if (bit_is_set (workers[t].written, i))
        disk[SHARED_START + i] = shared_byte (SHARED_START + i);
  }
}

static void
check_disk (struct vdi_chain *chain, const uint8_t *expected)
{
  uint8_t *buf = malloc (SIZE);
  uint64_t i;

  assert (buf != NULL);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_pread (chain, buf, SIZE, 0,
                                          &pattern_below), 0);
  for (i = 0; i < SIZE; ++i)
    if (buf[i] != expected[i]) {
      fprintf (stderr, "byte %" PRIu64 " is 0x%02x, model 0x%02x\n",
               i, buf[i], expected[i]);
      CU_FAIL ("the disk differs from the model");
      break;
    }
  free (buf);
}

static void
check_image_clean (const char *path)
{
  struct vdi_image *img = vdi_image_open (path, 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  CU_ASSERT_EQUAL (vdi_image_leaked_slots (img), 0);
  vdi_image_close (img);
}

/* A base of BLOCKS blocks, each with data, zero or free in turn. */
static char *
make_base (struct vdi_header *h)
{
  uint32_t map[BLOCKS], b, nslots = 0;
  uint8_t *slots = malloc (SIZE);
  uint64_t i;
  char *path;

  assert (slots != NULL);
  memset (initial, 0, sizeof initial);
  test_header_init (h, SIZE, BS, 1);
  for (b = 0; b < BLOCKS; ++b) {
    switch (b % 3) {
    case 0:
      test_random_fill (slots + (uint64_t) nslots * BS, BS);
      memcpy (initial + (uint64_t) b * BS, slots + (uint64_t) nslots * BS,
              BS);
      map[b] = nslots++;
      break;
    case 1:
      map[b] = VDI_BLOCK_ZERO;
      break;
    default:
      map[b] = VDI_BLOCK_FREE;
      for (i = (uint64_t) b * BS; i < (uint64_t) (b + 1) * BS; ++i)
        initial[i] = below_byte (i);
    }
  }
  h->blocks_allocated = nslots;
  path = test_write_image (h, map, slots, nslots, 0);
  free (slots);
  return path;
}

/* An empty differencing image over parent. */
static char *
make_top (const struct vdi_header *parent)
{
  struct vdi_header h;
  uint32_t map[BLOCKS], b;

  test_header_init (&h, SIZE, BS, 40);
  h.type = VDI_TYPE_DIFF;
  h.uuid_linkage = parent->uuid_create;
  h.uuid_parent_modify = parent->uuid_modify;
  for (b = 0; b < BLOCKS; ++b)
    map[b] = VDI_BLOCK_FREE;
  return test_write_image (&h, map, NULL, 0, 0);
}

static struct vdi_chain *
open_chain (const char *top, const char *base, bool layer)
{
  struct vdi_image *images[2];

  images[0] = vdi_image_open (top, VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[0]);
  if (layer)
    return vdi_layer_new (images[0]);
  images[1] = vdi_image_open (base, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[1]);
  return vdi_chain_new (images, 2);
}

/* The bytes of a file, to see that it did not change. */
static uint8_t *
file_contents (const char *path, size_t *size)
{
  struct stat st;
  uint8_t *buf;
  int fd = open (path, O_RDONLY | O_CLOEXEC);

  assert (fd >= 0 && fstat (fd, &st) == 0);
  buf = malloc (st.st_size);
  assert (buf != NULL);
  assert (pread (fd, buf, st.st_size, 0) == st.st_size);
  close (fd);
  *size = st.st_size;
  return buf;
}

static void
stress (bool layer)
{
  static struct worker workers[THREADS];
  struct round round = { 0 };
  struct vdi_header base_header;
  struct vdi_chain *chain;
  char *base, *top;
  uint8_t *base_before, *base_after, *expected;
  size_t base_size, size_after;
  uint64_t i;
  unsigned t;

  base = make_base (&base_header);
  top = make_top (&base_header);
  CU_ASSERT_PTR_NOT_NULL_FATAL (base);
  CU_ASSERT_PTR_NOT_NULL_FATAL (top);
  if (layer)
    for (i = 0; i < SIZE; ++i)
      initial[i] = below_byte (i);
  base_before = file_contents (base, &base_size);
  chain = open_chain (top, base, layer);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);

  for (t = 0; t < THREADS; ++t) {
    struct worker *w = &workers[t];

    memset (w, 0, sizeof *w);
    w->round = &round;
    w->index = t;
    w->chain = chain;
    w->rng = test_seed + 1 + t * UINT64_C (0x9e3779b97f4a7c15);
    w->start = (uint64_t) t * OWN_BLOCKS * BS;
    memcpy (w->model, initial + w->start, sizeof w->model);
  }
  for (t = 0; t < THREADS; ++t)
    assert (pthread_create (&workers[t].thread, NULL, work,
                            &workers[t]) == 0);
  for (t = 0; t < THREADS; ++t) {
    assert (pthread_join (workers[t].thread, NULL) == 0);
    if (workers[t].failure[0] != '\0') {
      fprintf (stderr, "%s\n", workers[t].failure);
      CU_FAIL ("a thread failed");
    }
  }
  CU_ASSERT_EQUAL (__atomic_load_n (&errors, __ATOMIC_RELAXED), 0);

  expected = malloc (SIZE);
  assert (expected != NULL);
  expected_disk (workers, expected);
  CU_ASSERT_EQUAL (vdi_chain_flush (chain), 0);
  check_disk (chain, expected);
  vdi_chain_free (chain);

  check_image_clean (top);
  chain = open_chain (top, base, layer);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  check_disk (chain, expected);
  vdi_chain_free (chain);

  base_after = file_contents (base, &size_after);
  CU_ASSERT (size_after == base_size &&
             memcmp (base_before, base_after, base_size) == 0);
  free (base_before);
  free (base_after);
  free (expected);
}

static void
test_stress_chain (void)
{
  stress (false);
}

static void
test_stress_layer (void)
{
  stress (true);
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-stress");

  vdi_set_log_function (stress_log);
  ADD_TEST (s, test_stress_chain);
  ADD_TEST (s, test_stress_layer);
  return test_run ();
}
