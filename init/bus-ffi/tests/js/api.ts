// The quilt-bus package's API in one Bun process, run by tests/bun_api.rs
// on channels it created: t.block (block, 4 slots), t.drop (drop-oldest,
// 2 slots), t.rr.req / t.rr.rep (block), each opened here at both ends.
// Throws on the first failed check; prints {"ok":true} at the end.
import { BusError, Code, Kind, openClient, openPublisher, openServer, openSubscriber } from "quilt-bus";

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
}
function throws(f: () => unknown, code: number, text: string): void {
  try {
    f();
  } catch (e) {
    check(e instanceof BusError, `${text}: BusError, got ${e}`);
    const err = e as BusError;
    check(err.code === code && err.message.includes(text), `${text}: got ${err.code} ${err.message}`);
    return;
  }
  throw new Error(`check failed: no error, wanted ${text}`);
}
const enc = new TextEncoder();
const dec = new TextDecoder();

// Block mode: send, receive in place, back-pressure.
const sub = openSubscriber("t.block");
const pub = openPublisher("t.block");
check(pub.slotSize === 64 && sub.slotSize === 64, "slot size 64");
check(pub.send(enc.encode("hello"), 42, Kind.Data, 1000) === 0, "first seq 0");
let m = sub.receive(1000)!;
check(m !== null && dec.decode(m.bytes) === "hello", "payload");
check(m.seq === 0 && m.corr === 42 && m.kind === Kind.Data, "header");
check(m.valid(), "valid in block mode");
m.release();
check(sub.receive(0) === null, "nothing to peek");
check(sub.receive(5) === null, "short wait times out");

const slot = pub.loan(0)!;
check(slot.length === 64, "loaned the whole slot");
slot.set(enc.encode("in place"));
check(pub.publish(8, 7, Kind.Request) === 1, "seq 1");
m = sub.receive()!;
check(dec.decode(m.bytes) === "in place" && m.kind === Kind.Request && m.corr === 7, "loaned message");
m.release();

for (let i = 0; i < 4; i++) check(pub.send(enc.encode(`m${i}`)) !== null, `fill ${i}`);
check(pub.loan(0) === null, "full: no wait");
check(pub.loan(5) === null, "full: timeout");
m = sub.receive(0)!;
check(dec.decode(m.bytes) === "m0", "oldest first");
m.release();
check(pub.loan(0) !== null, "space after release");
throws(() => pub.publish(65), Code.TooLong, "exceeds the slot size");
throws(() => pub.send(new Uint8Array(65)), Code.TooLong, "exceed the slot size");
pub.publish(0);
for (let i = 0; i < 4; i++) sub.receive(0)!.release();
check(sub.lost() === 0, "nothing lost in block mode");

// Drop-oldest: validation after reading, copy(), lost().
const dsub = openSubscriber("t.drop");
const dpub = openPublisher("t.drop");
dpub.send(enc.encode("first"));
m = dsub.receive(0)!;
const firstView = m.bytes;
for (let i = 0; i < 3; i++) dpub.send(enc.encode(`later${i}`));
check(!m.valid(), "overwritten message is invalid");
check(m.copy() === null, "copy of an overwritten message is null");
check(dec.decode(firstView).startsWith("later"), "the view shows the overwrite: no copy was made");
m.release();
m = dsub.receive(0)!;
check(m.seq === 2 && dec.decode(m.bytes) === "later1", `next is seq 2, got ${m.seq}`);
check(dsub.lost() === 1, `lost 1, got ${dsub.lost()}`);
const copied = m.copy()!;
check(copied !== null && dec.decode(copied) === "later1", "copy of an intact message");
m.release();

// Request/reply in one thread: request, serve, wait; stale replies skipped.
const server = openServer("t.rr");
const client = openClient("t.rr");
const upper = (req: Uint8Array, rep: Uint8Array) => {
  rep.set(enc.encode(dec.decode(req).toUpperCase()));
  return req.length;
};
const c1 = client.request(enc.encode("abandoned"), 1000)!;
const c2 = client.request((s) => {
  s.set(enc.encode("zero copy"));
  return 9;
}, 1000)!;
check(c2 === c1 + 1, "correlation ids count up");
check(server.serveOne(upper, 1000) && server.serveOne(upper, 1000), "served two");
check(!server.serveOne(upper, 5), "nothing more to serve");
m = client.waitReply(c2, 1000)!;
check(m.corr === c2 && m.kind === Kind.Reply && dec.decode(m.bytes) === "ZERO COPY", "reply to c2, c1 skipped");
m.release();
check(client.waitReply(c1, 5) === null, "c1's reply was released");
check(server.served === 2 && server.overwritten === 0, "server counters");

// Errors.
throws(() => openSubscriber("missing"), Code.Invalid, "has no missing:sub");
throws(() => openSubscriber("t.block"), Code.Invalid, "already open");
throws(() => openSubscriber("Bad Topic"), Code.Invalid, "bad topic");
sub.close();
throws(() => sub.receive(0), Code.Invalid, "t.block is closed");
const again = openSubscriber("t.block");
again.close();
for (const e of [pub, dsub, dpub, server, client]) e.close();
console.log(JSON.stringify({ ok: true }));
