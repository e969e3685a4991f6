// Public types of quilt-bus (implementation: index.ts). Payload views are
// Uint8Arrays over shared memory: see the rules at the top of index.ts.

/** What a message is (the slot's kind word). */
export declare const Kind: { readonly Data: 0; readonly Request: 1; readonly Reply: 2 };
export type Kind = 0 | 1 | 2;

/** Negative return codes of libquiltbus (include/quiltbus.h). */
export declare const Code: {
  readonly Timeout: -1;
  readonly Full: -2;
  readonly Evicted: -3;
  readonly NoLoan: -4;
  readonly TooLong: -5;
  readonly Invalid: -6;
  readonly Corrupt: -7;
  readonly WrongRole: -8;
  readonly System: -9;
  readonly Internal: -10;
};

/** A failed bus call: `code` is one of `Code`, `message` says why. */
export declare class BusError extends Error {
  readonly code: number;
  constructor(code: number, message: string);
}

export interface OpenOptions {
  /** Polls before sleeping when waiting (0: sleep at once; 0xffffffff: never sleep). Default 2000. */
  spins?: number;
  /** The QUILT_BUS string to use instead of the environment's. */
  spec?: string;
}

declare abstract class Endpoint {
  readonly topic: string;
  /** Payload bytes per slot. */
  readonly slotSize: number;
  /** Releases the endpoint; every view obtained from it becomes invalid. */
  close(): void;
}

/** The publishing end of a channel: loan a slot, write it in place, publish. */
export declare class Publisher extends Endpoint {
  constructor(topic: string, options?: OpenOptions);
  /** The next slot (`slotSize` bytes of shared memory); null if no space within `timeoutMs` (undefined: forever, 0: no wait). */
  loan(timeoutMs?: number): Uint8Array | null;
  /** Publishes the loaned slot's first `len` bytes; returns the sequence number. */
  publish(len: number, corr?: number, kind?: Kind): number;
  /** Copies `bytes` into a slot and publishes it; null if no space in time. */
  send(bytes: Uint8Array, corr?: number, kind?: Kind, timeoutMs?: number): number | null;
}

/** A received message, in place in shared memory; valid until `release()`. */
export declare class Message {
  readonly seq: number;
  readonly corr: number;
  readonly kind: Kind;
  /** The payload, a read-only view of the slot: never write into it. */
  readonly bytes: Uint8Array;
  /** Whether what was read so far is the message (false: overwritten meanwhile, drop-oldest channels). */
  valid(): boolean;
  /** A private copy of the payload, or null if it was overwritten while copying. */
  copy(): Uint8Array | null;
  /** Frees the slot (block mode: makes room for the publisher); `bytes` dies. */
  release(): void;
}

/** A subscribing end of a channel; joins at the newest message. */
export declare class Subscriber extends Endpoint {
  constructor(topic: string, options?: OpenOptions);
  /** The next message within `timeoutMs` (undefined: forever, 0: no wait), or null. Until released, receiving again returns it again. */
  receive(timeoutMs?: number): Message | null;
  /** Messages lost so far (overwritten before being read, or malformed). */
  lost(): number;
}

/** Opens `topic` for publishing (token `bus:<topic>:pub`). */
export declare function openPublisher(topic: string, options?: OpenOptions): Publisher;
/** Opens `topic` for receiving (token `bus:<topic>:sub`). */
export declare function openSubscriber(topic: string, options?: OpenOptions): Subscriber;

/** A request body: bytes to copy, or a function filling the slot in place and returning the length. */
export type Body = Uint8Array | ((slot: Uint8Array) => number);

/** The asking side of `<name>`: publishes on `<name>.req`, receives on `<name>.rep`. */
export declare class Client {
  readonly name: string;
  readonly requests: Publisher;
  readonly replies: Subscriber;
  constructor(name: string, options?: OpenOptions);
  /** Sends a request; its correlation id, or null if no slot freed up in time. */
  request(body: Body, timeoutMs?: number): number | null;
  /** The reply to `corr` (others are released and skipped), or null on timeout. Release it when done. */
  waitReply(corr: number, timeoutMs?: number): Message | null;
  /** `request` then `waitReply`. */
  call(body: Body, timeoutMs?: number): Message | null;
  close(): void;
}

/** Writes the reply to `request` into `reply` (the slot, in place) and returns its length. */
export type Handler = (request: Uint8Array, reply: Uint8Array, info: { corr: number; seq: number }) => number;

/** The answering side of `<name>`: receives on `<name>.req`, replies on `<name>.rep`. */
export declare class Server {
  readonly name: string;
  readonly requests: Subscriber;
  readonly replies: Publisher;
  /** Requests answered. */
  served: number;
  /** Requests overwritten while being handled (drop-oldest request channel): not answered. */
  overwritten: number;
  constructor(name: string, options?: OpenOptions);
  /** Answers one request within `timeoutMs`; false if none came or no reply slot freed up (it stays pending). */
  serveOne(handler: Handler, timeoutMs?: number): boolean;
  /** Answers requests until `signal` aborts, yielding to the event loop between slices; resolves to `served`. */
  serve(handler: Handler, options?: { signal?: AbortSignal; idleMs?: number; batch?: number }): Promise<number>;
  close(): void;
}

/** Opens the client end of `<name>.req` / `<name>.rep`. */
export declare function openClient(name: string, options?: OpenOptions): Client;
/** Opens the server end of `<name>.req` / `<name>.rep`. */
export declare function openServer(name: string, options?: OpenOptions): Server;
