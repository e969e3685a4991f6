/* libquiltbus: C ABI of the Quilt shared-memory bus (crate init/bus-ffi).
 *
 * A container gets its channels from quilt-init as inherited fds named in
 * QUILT_BUS="<topic>:<role>:<fd>,...;..."; qbus_open finds one by topic and
 * role. Payloads are read and written in place in shared memory.
 *
 * Threading: a handle is used by one thread at a time. Pointers handed out
 * stay valid until qbus_publish (a loaned slot), qbus_consume (a received
 * message) or qbus_close (everything). Received payloads are mapped
 * read-only; on drop-oldest channels check qbus_validate after reading.
 */
#ifndef QUILTBUS_H
#define QUILTBUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QBUS_ABI_VERSION 1

#define QBUS_OK 0
#define QBUS_TIMEOUT (-1)    /* nothing arrived / no space freed up in time */
#define QBUS_FULL (-2)       /* block mode, timeout 0: a subscriber lags a whole ring */
#define QBUS_EVICTED (-3)    /* this publisher was replaced (takeover); close it */
#define QBUS_NO_LOAN (-4)    /* qbus_publish without qbus_loan */
#define QBUS_TOO_LONG (-5)   /* length exceeds the slot size */
#define QBUS_INVALID (-6)    /* bad argument: null handle, kind, sample not held */
#define QBUS_CORRUPT (-7)    /* malformed message skipped; call again */
#define QBUS_WRONG_ROLE (-8) /* publisher call on a subscriber or the reverse */
#define QBUS_SYSTEM (-9)     /* a system call failed (futex, ...) */
#define QBUS_INTERNAL (-10)  /* a bug in libquiltbus (caught panic) */

#define QBUS_PUB 0
#define QBUS_SUB 1

#define QBUS_KIND_DATA 0
#define QBUS_KIND_REQUEST 1
#define QBUS_KIND_REPLY 2

typedef struct qbus_handle qbus_handle;

typedef struct qbus_sample {
  uint64_t seq;      /* sequence number on the channel */
  uint64_t corr;     /* correlation id */
  uint64_t ptr;      /* address of the first payload byte */
  uint64_t len;      /* payload length */
  uint32_t kind;     /* QBUS_KIND_* */
  uint32_t reserved; /* zero */
} qbus_sample;

uint32_t qbus_abi_version(void);
/* Copies this thread's last error (NUL-terminated, at most len - 1 bytes);
 * returns its full length. buf may be NULL to ask for the length. */
size_t qbus_last_error(char *buf, size_t len);

/* spins: polls before sleeping in a futex (0: sleep at once, UINT32_MAX:
 * never sleep). Publishers take over from a dead predecessor. NULL on
 * error. qbus_open_spec takes the QUILT_BUS string (NULL: the env var). */
qbus_handle *qbus_open(const char *topic, uint32_t role, uint32_t spins);
qbus_handle *qbus_open_spec(const char *spec, const char *topic, uint32_t role, uint32_t spins);
void qbus_close(qbus_handle *h);

int64_t qbus_slot_size(qbus_handle *h);
int64_t qbus_lost(qbus_handle *h); /* subscriber */

/* timeout_ns: < 0 forever, 0 no wait, > 0 at most that long. */
int32_t qbus_loan(qbus_handle *h, int64_t timeout_ns, uint8_t **out_ptr, uint64_t *out_cap);
/* Returns the sequence number (>= 0) or a QBUS_* code. */
int64_t qbus_publish(qbus_handle *h, uint64_t len, uint64_t corr, uint32_t kind);

/* 1: *out filled (held until qbus_consume), 0 (peek): none, < 0: code. */
int32_t qbus_peek(qbus_handle *h, qbus_sample *out);
int32_t qbus_wait(qbus_handle *h, int64_t timeout_ns, qbus_sample *out);
/* sample may be NULL (the held one). validate: 1 intact, 0 overwritten. */
int32_t qbus_validate(qbus_handle *h, const qbus_sample *sample);
int32_t qbus_consume(qbus_handle *h, const qbus_sample *sample);

#ifdef __cplusplus
}
#endif

#endif /* QUILTBUS_H */
