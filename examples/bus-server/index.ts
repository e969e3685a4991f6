// bus-server: answers every request on the bus channel pair calc.req /
// calc.rep, zero-copy both ways: the reply is the request with every
// little-endian 32-bit word incremented by one (a trailing partial word
// is copied as is), so a client can check every byte. An empty request
// (a client's "are you there?") gets an empty reply.
//
// Serves until SIGTERM or SIGINT, then prints one JSON line
// {served, overwritten} and exits 0. Input on stdin is ignored.
import { openServer } from "quilt-bus";

const server = openServer("calc");
const stop = new AbortController();
process.on("SIGTERM", () => stop.abort());
process.on("SIGINT", () => stop.abort());

const served = await server.serve(
  (request, reply) => {
    const words = request.length >>> 2;
    const inWords = new DataView(request.buffer, request.byteOffset, request.length);
    const outWords = new DataView(reply.buffer, reply.byteOffset, reply.length);
    for (let i = 0; i < words; i++) {
      outWords.setUint32(i * 4, (inWords.getUint32(i * 4, true) + 1) >>> 0, true);
    }
    for (let i = words * 4; i < request.length; i++) reply[i] = request[i]!;
    return request.length;
  },
  { signal: stop.signal },
);
console.log(JSON.stringify({ served, overwritten: server.overwritten }));
server.close();
