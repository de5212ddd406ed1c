/* ws.h: WebSocket (RFC 6455) framing for one connection over libwslay's event API.
 *
 * Memory in, memory out: mb_ws_feed takes the bytes read from the socket and
 * reports whole messages (fragments reassembled) and control frames through
 * on_msg; everything to write (data, pongs to pings, the close reply) collects
 * in an output buffer taken with mb_ws_take_output. Pings are answered and a
 * received close is echoed by libwslay itself.
 *
 * Checked here: a frame larger than max_frame or a message larger than
 * max_message ends with close code 1009; a text message (or close reason) that
 * is not UTF-8 with 1007; a protocol error (bad opcode, unmasked client frame,
 * bad control frame) with 1002. After such a failure feed returns the close
 * code as a negative value, the close frame is in the output and no more input
 * is read. */
#ifndef MB_HTTP_WS_H
#define MB_HTTP_WS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mb_ws mb_ws_t;

enum {
  MB_WS_CONT = 0x0, MB_WS_TEXT = 0x1, MB_WS_BINARY = 0x2,
  MB_WS_CLOSE = 0x8, MB_WS_PING = 0x9, MB_WS_PONG = 0xa
};

typedef struct mb_ws_limits {
  uint64_t max_frame;     /* payload bytes of one frame; 0: max_message */
  uint64_t max_message;   /* bytes of a reassembled message; 0: 16 MB */
} mb_ws_limits_t;

/* opcode is MB_WS_TEXT, BINARY, PING, PONG or CLOSE (then code is the status
 * received, 1005 if none, and data/len the reason). */
typedef void (*mb_ws_on_msg)(void *ud, int opcode, const uint8_t *data, size_t len, int code);

mb_ws_t *mb_ws_new(int client, const mb_ws_limits_t *limits);
void mb_ws_free(mb_ws_t *ws);
/* 0, or minus the close code of a failure (-1002, -1007, -1009), or -1 if the
 * connection is unusable (out of memory). */
int mb_ws_feed(mb_ws_t *ws, const uint8_t *data, size_t len, mb_ws_on_msg cb, void *ud);
/* Queues one message (opcode TEXT, BINARY, PING, PONG); text is not checked. 0 or <0. */
int mb_ws_send(mb_ws_t *ws, int opcode, const uint8_t *data, size_t len);
/* Queues a close frame (code 0: none). 0, or <0 if a close was already sent. */
int mb_ws_close(mb_ws_t *ws, int code, const uint8_t *reason, size_t len);
/* Frames everything queued and returns the bytes to write (valid until the next
 * call on ws); *len 0 when nothing is pending. The buffer is then empty. */
const uint8_t *mb_ws_take_output(mb_ws_t *ws, size_t *len);
/* Bytes of messages queued and not yet framed by take_output. */
size_t mb_ws_pending(mb_ws_t *ws);
/* 1 once a close was both sent and received, or reading stopped after a
 * failure and our close is framed: the socket can be closed after writing. */
int mb_ws_done(mb_ws_t *ws);
int mb_ws_close_sent(mb_ws_t *ws);
int mb_ws_close_received(mb_ws_t *ws);
/* 1 if data[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int mb_ws_utf8_valid(const uint8_t *data, size_t len);

#endif
