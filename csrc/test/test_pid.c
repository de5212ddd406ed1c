/* test_pid.c: pid generations (FIFO slot reuse, 32-bit serials) and runtime
 * incarnations (a fresh creation per runtime: its pids and refs never name
 * another runtime's processes). */
#include "mb_test.h"
#include "testkit.h"
#include "core/runtime.h"

static int exit_at_start(mb_proc_t *self, const mb_msg_t *m, void *ud) {
  (void)self, (void)m, (void)ud;
  return 1;
}

/* Spawns processes that exit at once until one lands in slot idx; its pid. */
static mb_pid_t spawn_into_slot(mb_runtime_t *rt, uint32_t idx, int limit) {
  for (int i = 0; i < limit; i++) {
    mb_pid_t pid = 0;
    if (mb_spawn_native(rt, exit_at_start, NULL, NULL, NULL, &pid)) {
      tk_sleep_ms(1); /* the table is momentarily full of exiting processes */
      continue;
    }
    if (mb_pid_index(pid) == idx) return pid;
  }
  return 0;
}

/* Waits until slot idx is free (its process gone and its refs dropped). */
static int slot_free(mb_runtime_t *rt, uint32_t idx) {
  mb_proc_t *p = mb_ptable_slot(&rt->procs, idx);
  return p && (atomic_load(&p->ctl) & (MB_CTL_ALIVE | MB_CTL_REFS)) == 0;
}

MB_TEST(slots_are_reused_in_fifo_order) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_pid_t first = 0, pid = 0;
  MB_REQUIRE(mb_spawn_native(rt, exit_at_start, NULL, NULL, NULL, &first) == 0);
  TK_WAIT_UNTIL(slot_free(rt, mb_pid_index(first)), 2000);
  MB_REQUIRE(slot_free(rt, mb_pid_index(first)));
  /* every other free slot of the first chunk comes before the freed one again */
  int spawned = 0;
  for (; spawned < 2 * (int)MB_CHUNK_SIZE; spawned++) {
    MB_REQUIRE(mb_spawn_native(rt, exit_at_start, NULL, NULL, NULL, &pid) == 0);
    if (mb_pid_index(pid) == mb_pid_index(first)) break;
  }
  MB_CHECK(spawned >= (int)MB_CHUNK_SIZE - 3);
  MB_CHECK(pid != first && mb_pid_index(pid) == mb_pid_index(first));
  mb_runtime_free(rt);
}

MB_TEST(serial_goes_past_24_bits_through_one_slot) {
  mb_runtime_t *rt = tk_runtime(1);
  mb_pid_t pid = 0;
  MB_REQUIRE(mb_spawn_native(rt, exit_at_start, NULL, NULL, NULL, &pid) == 0);
  uint32_t idx = mb_pid_index(pid);
  TK_WAIT_UNTIL(slot_free(rt, idx), 2000);
  MB_REQUIRE(slot_free(rt, idx));
  /* test-only: put the free slot just before the old 24-bit wrap */
  mb_proc_t *slot = mb_ptable_slot(&rt->procs, idx);
  atomic_store(&slot->ctl, (uint64_t)0xFFFFFEu << 32);
  tk_probe_t *pr = tk_probe(rt, NULL);
  mb_pid_t seen[4];
  for (int round = 0; round < 4; round++) {
    seen[round] = spawn_into_slot(rt, idx, 4 * MB_CHUNK_SIZE);
    MB_REQUIRE(seen[round] != 0);
    MB_CHECK_EQ_INT(mb_pid_serial(seen[round]), 0xFFFFFEu + (uint32_t)round);
    TK_WAIT_UNTIL(slot_free(rt, idx), 2000);
  }
  /* each is a distinct pid; none names the later occupant of the slot */
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++) MB_CHECK(seen[i] != seen[j]);
  mb_pid_t live = spawn_into_slot(rt, idx, 4 * MB_CHUNK_SIZE);
  MB_CHECK_EQ_INT(mb_pid_serial(live), 0x1000002u);
  for (int i = 0; i < 4; i++) MB_CHECK(!mb_alive(rt, seen[i]));
  /* the serial survives the 32-bit wrap too, without ever being pid 0 */
  TK_WAIT_UNTIL(slot_free(rt, idx), 2000);
  atomic_store(&slot->ctl, (uint64_t)0xFFFFFFFFu << 32);
  mb_pid_t last = spawn_into_slot(rt, idx, 4 * MB_CHUNK_SIZE);
  TK_WAIT_UNTIL(slot_free(rt, idx), 2000);
  mb_pid_t wrapped = spawn_into_slot(rt, idx, 4 * MB_CHUNK_SIZE);
  MB_CHECK_EQ_INT(mb_pid_serial(last), 0xFFFFFFFFu);
  MB_CHECK_EQ_INT(mb_pid_serial(wrapped), 0);
  MB_CHECK(wrapped != 0 && mb_pid_index(wrapped) == idx);
  mb_runtime_free(rt);
  tk_probe_free(pr);
}

MB_TEST(each_runtime_is_a_new_incarnation) {
  mb_runtime_t *a = tk_runtime(1);
  tk_probe_t *pa = tk_probe(a, NULL);
  mb_ref_t ra = mb_make_ref(a);
  mb_enc_t e;
  mb_enc_init(&e, mb_runtime_nodes(a), 0);
  mb_enc_tuple(&e, 2);
  mb_enc_pid(&e, pa->pid);
  mb_enc_ref(&e, ra);
  size_t len;
  uint8_t *bytes = mb_enc_finish(&e, &len);
  MB_REQUIRE(bytes);
  uint32_t ca = mb_runtime_creation(a);
  mb_runtime_free(a);

  mb_runtime_t *b = tk_runtime(1);
  MB_CHECK(mb_runtime_creation(b) != ca && mb_runtime_creation(b) != 0);
  /* the first process of b has the slot pa had, under another pid */
  tk_probe_t *pb = tk_probe(b, NULL);
  MB_CHECK_EQ_INT(mb_pid_index(pb->pid), mb_pid_index(pa->pid));
  MB_CHECK(pb->pid != pa->pid);
  MB_CHECK(!mb_alive(b, pa->pid));
  tk_send_int(b, 0, pa->pid, 1);
  /* decoded by b, a's pid and ref belong to another node (a's creation): dead */
  mb_dec_t d;
  mb_pid_t pid = 0;
  mb_ref_t ref;
  MB_REQUIRE(mb_dec_init(&d, mb_runtime_nodes(b), bytes, len) == 0);
  mb_dec_tuple(&d, &(uint32_t){0});
  MB_CHECK_EQ_INT(mb_dec_pid(&d, &pid), 0);
  MB_CHECK(mb_pid_node(pid) != 0 && !mb_alive(b, pid));
  MB_CHECK_EQ_INT(mb_dec_ref(&d, &ref), 0);
  MB_CHECK(ref.node != 0);
  tk_send_int(b, 0, pid, 2);
  MB_CHECK(tk_wait(pb, 100) == NULL);
  /* refs carry the creation: b's never equal a's */
  mb_ref_t rb = mb_make_ref(b);
  MB_CHECK(!mb_ref_equal(ra, rb));
  MB_CHECK(ra.id[0] == rb.id[0] && ra.id[1] == rb.id[1]); /* same counter, other incarnation */
  free(bytes);
  mb_runtime_free(b);
  tk_probe_free(pa);
  tk_probe_free(pb);
}

int main(void) {
  MB_RUN(slots_are_reused_in_fifo_order);
  MB_RUN(serial_goes_past_24_bits_through_one_slot);
  MB_RUN(each_runtime_is_a_new_incarnation);
  return mb_test_summary();
}
