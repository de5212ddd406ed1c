/* fuzz_packet.c: libFuzzer target for the framing of TCP input (packet raw,
 * 1, 2, 4, line: mb_packet_next in csrc/io/tcp.c), the parser every byte a
 * peer sends goes through. The first bytes choose the mode and limits; the
 * rest is the stream, consumed packet by packet as the port does. Checks: a
 * packet never reaches past the input, always makes progress, and a header's
 * length is what it says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int modes[] = {0, 1, 2, 4, MB_PACKET_LINE};
  if (size < 4) return 0;
  int packet = modes[data[0] % 5];
  size_t buffer = (size_t)data[1] + 1, packet_size = data[2] & 1 ? (size_t)data[2] * 4 : 0;
  size_t want = packet == 0 ? data[3] % 8 : 0;
  const uint8_t *b = data + 4;
  size_t len = size - 4;
  for (int at_end = 0; at_end < 2; at_end++) {
    size_t off = 0;
    for (;;) {
      size_t skip, n;
      int r = mb_packet_next(packet, buffer, packet_size, at_end, b + off, len - off, want, &skip, &n);
      if (r <= 0) break;
      if (skip + n > len - off) abort();         /* past the input */
      if (skip + n == 0) abort();                /* no progress on non-empty input */
      if (packet > 0) {
        size_t plen = 0;
        for (size_t i = 0; i < skip; i++) plen = plen << 8 | b[off + i];
        if (skip != (size_t)packet || plen != n) abort();
      }
      if (packet == MB_PACKET_LINE && n > buffer) abort();
      off += skip + n;
    }
  }
  return 0;
}
