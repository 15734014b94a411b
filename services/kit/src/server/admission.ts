// Admission: every call of a service method is decided on its metadata, before grpc-js reads a byte
// of its body. grpc-js reads a request only when the handler asks (startRead), and the handler asks
// only once the interceptor passes the metadata on; so authentication, scopes, the per-principal
// call bound and the request-byte budget all run here, and a refused call's body is never buffered.
// The refusal itself is replayed inside the middleware chain (auth/middleware.ts), so it is traced,
// logged and answered like every other error.
import type { Deadline, Metadata, ServerInterceptingCall, ServerInterceptingCallInterface, ServerInterceptor } from '@grpc/grpc-js';
import type { Principal } from '../auth/jwt.js';
import type { CallCredentials } from '../auth/middleware.js';
import { GantryError, Status } from '../errors.js';
import type { Logger } from '../logger.js';
import { recordAdmission, type Admission, type MethodKind } from '../rpc/context.js';
import { UndecodableRequest } from '../rpc/decode.js';
import { peerIdentity, type PeerIdentity } from '../tls/identity.js';
import { ExactMessageDecoder } from './message-decoder.js';

/** What admission needs to know of one method. */
export interface MethodAdmission {
  kind: MethodKind;
  /** Its request limit (ServiceModule.maxRequestBytes, else limits.maxRequestBytes). */
  maxRequestBytes: number;
}

export interface AdmissionOptions {
  /** The service methods by path; other paths (health, reflection) need no credentials and take `defaultRequestBytes`. */
  methods: ReadonlyMap<string, MethodAdmission>;
  defaultRequestBytes: number;
  /** Decides a call: a principal at once when it is known without waiting, else a promise. */
  authorize: (call: CallCredentials) => Principal | Promise<Principal>;
  maxCallsPerPrincipal: number;
  maxRequestBytesInFlight: number;
  /** The server-wide message limit: what a call may buffer if its method's limit cannot be applied at the length prefix. */
  maxReceiveMessageBytes: number;
  log: Logger;
}

/** Open calls per principal, bounded. */
class CallsPerPrincipal {
  private readonly open = new Map<string, number>();
  constructor(private readonly max: number) {}

  tryAcquire(subject: string): boolean {
    const n = this.open.get(subject) ?? 0;
    if (n >= this.max) return false;
    this.open.set(subject, n + 1);
    return true;
  }

  release(subject: string): void {
    const n = (this.open.get(subject) ?? 1) - 1;
    if (n <= 0) this.open.delete(subject);
    else this.open.set(subject, n);
  }
}

/** Bytes reserved by requests still arriving, bounded. */
class ByteBudget {
  private used = 0;
  constructor(readonly max: number) {}

  tryReserve(bytes: number): boolean {
    if (this.used + bytes > this.max) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
  }
}

/** How long a caller refused for the budget should wait: requests arrive in milliseconds, so soon. */
const BUDGET_RETRY_MS = 1000;

function budgetSpent(methodPath: string): GantryError {
  return new GantryError(Status.RESOURCE_EXHAUSTED, `the server is receiving as many request bytes as it buffers at once (limits.maxRequestBytesInFlight); retry ${methodPath} in ${BUDGET_RETRY_MS} ms`, {
    trailers: { 'grpc-retry-pushback-ms': String(BUDGET_RETRY_MS), 'retry-after': String(Math.ceil(BUDGET_RETRY_MS / 1000)) },
  });
}

/** What an admitted call holds until it ends: its principal's call slot, and each request message's bytes until that message has arrived. */
class Ticket {
  /** Reserved sizes of messages announced and not yet delivered, oldest first. */
  private readonly pending: number[] = [];
  /** Reserved on the headers for the first message, not yet claimed by its prefix. */
  private upFront = 0;
  private subject: string | undefined;
  private ended = false;

  constructor(private readonly calls: CallsPerPrincipal, private readonly budget: ByteBudget) {}

  /** Takes a call slot for `principal` and `bytes` of the budget up front (0 when reserved at each prefix); throws RESOURCE_EXHAUSTED when either is spent. */
  take(principal: Principal, methodPath: string, bytes: number): void {
    // Cancelled while it was being authorized: nothing to hold, nobody to answer.
    if (this.ended) throw new GantryError(Status.CANCELLED, 'cancelled by the client');
    if (!this.calls.tryAcquire(principal.subject)) {
      throw new GantryError(Status.RESOURCE_EXHAUSTED, `${principal.subject} has too many calls open in this process (limits.maxCallsPerPrincipal); retry when some have ended`);
    }
    this.subject = principal.subject;
    if (bytes === 0) return;
    if (!this.budget.tryReserve(bytes)) {
      this.calls.release(principal.subject);
      this.subject = undefined;
      throw budgetSpent(methodPath);
    }
    this.upFront = bytes;
  }

  /**
   * Reserves a message's declared size as its prefix arrives, using what the headers reserved
   * first (what is left of it is given back); false when the budget cannot take the rest.
   */
  reserve(bytes: number): boolean {
    if (this.ended) return false;
    const covered = Math.min(this.upFront, bytes);
    if (bytes > covered && !this.budget.tryReserve(bytes - covered)) return false;
    this.budget.release(this.upFront - covered);
    this.upFront = 0;
    this.pending.push(bytes);
    return true;
  }

  /** A request message has arrived: its reservation is no longer needed. */
  requestArrived(): void {
    const bytes = this.pending.shift();
    if (bytes !== undefined) this.budget.release(bytes);
  }

  /** The call has ended (a status went out, or it was cancelled). Idempotent. */
  end(): void {
    this.ended = true;
    while (this.pending.length > 0) this.requestArrived();
    this.budget.release(this.upFront);
    this.upFront = 0;
    if (this.subject !== undefined) this.calls.release(this.subject);
    this.subject = undefined;
  }
}

type Next = ServerInterceptingCallInterface;
type HandlerListener = Parameters<Next['start']>[0];

/**
 * What a service call goes through between grpc-js's call (`next`) and the method's handler: one
 * object per call, which is both the call the handler drives and the listener grpc-js's call
 * reports to. (grpc-js's own ServerInterceptingCall makes a responder, a listener builder, a full
 * listener and an intercepting listener per call; this passes everything straight on.)
 *
 * It decides the call on its metadata before the handler sees it: grpc-js reads a request only
 * when the handler asks (startRead), and the handler asks only once it has the metadata, so no
 * message or half-close can arrive while the decision is pending. A refused call never reads its
 * body: the handler is given a placeholder request and a half-close instead, and the middleware
 * chain answers with the refusal.
 */
class AdmissionCall {
  private handler: HandlerListener | undefined;
  private cancelled = false;
  private refusedArriving = false;
  private withheld: { next: 'message' | 'halfClose' | 'nothing'; placeholder: UndecodableRequest } | undefined;

  constructor(
    private readonly next: Next,
    readonly methodPath: string,
    private readonly ticket: Ticket,
    private readonly reserveBytes: number,
    private readonly authorize: AdmissionOptions['authorize'],
  ) {}

  /** The verified certificate's identity (parsed only for a call without a token). */
  private peer(): PeerIdentity {
    return peerIdentity(this.next.getPeer(), this.next.getAuthContext().sslPeerCertificate);
  }

  // The listener grpc-js's call reports to.
  onReceiveMetadata(metadata: Metadata): void {
    if (this.cancelled) return;
    let decided: Principal | Promise<Principal>;
    const credentials: CallCredentials = { methodPath: this.methodPath, metadata, address: this.next.getPeer(), peer: () => this.peer() };
    try {
      decided = this.authorize(credentials);
    } catch (refused) {
      return this.admit(metadata, { refused });
    }
    if (decided instanceof Promise) {
      decided.then(
        (principal) => this.admit(metadata, this.take(principal)),
        (refused: unknown) => this.admit(metadata, { refused }),
      );
    } else {
      this.admit(metadata, this.take(decided));
    }
  }

  onReceiveMessage(message: unknown): void {
    this.ticket.requestArrived();
    if (this.cancelled || this.refusedArriving) return;
    this.handler?.onReceiveMessage(message);
  }

  onReceiveHalfClose(): void {
    if (this.cancelled || this.refusedArriving) return;
    this.handler?.onReceiveHalfClose();
  }

  onCancel(): void {
    this.cancelled = true;
    this.ticket.end();
    this.handler?.onCancel();
  }

  /** The principal's call slot and the up-front bytes; a refusal when either is spent. */
  private take(principal: Principal): Admission {
    try {
      this.ticket.take(principal, this.methodPath, this.reserveBytes);
      return { principal };
    } catch (refused) {
      return { refused };
    }
  }

  /** Records the decision for the auth middleware and hands the metadata on. */
  private admit(metadata: Metadata, admission: Admission): void {
    recordAdmission(metadata, admission);
    if ('refused' in admission) {
      const { refused } = admission;
      const error = refused instanceof GantryError ? refused : new GantryError(Status.INTERNAL, 'the call was refused before its request was read');
      this.withheld = { next: 'message', placeholder: new UndecodableRequest(error) };
    }
    // Cancelled while it was being decided: nothing to hand on, nobody to answer.
    if (!this.cancelled) this.handler?.onReceiveMetadata(metadata);
  }

  /**
   * Refuses a call whose request is arriving (the budget could not take it): the handler gets the
   * placeholder and a half-close in its place (whatever the client still sends is dropped), and the
   * middleware chain answers with the refusal and its trailers.
   */
  refuseArriving(refusal: GantryError): void {
    this.refusedArriving = true;
    const handler = this.handler;
    const placeholder = new UndecodableRequest(refusal);
    process.nextTick(() => {
      handler?.onReceiveMessage(placeholder);
      handler?.onReceiveHalfClose();
    });
  }

  // The call the handler drives.
  start(listener: HandlerListener): void {
    this.handler = listener;
    this.next.start(this);
  }

  startRead(): void {
    const withheld = this.withheld;
    if (!withheld) return this.next.startRead();
    // Delivered on the next tick, as grpc-js delivers what it reads: the handler's listener calls
    // startRead again from inside onReceiveMessage.
    if (withheld.next === 'message') {
      withheld.next = 'halfClose';
      process.nextTick(() => this.handler?.onReceiveMessage(withheld.placeholder));
    } else if (withheld.next === 'halfClose') {
      withheld.next = 'nothing';
      process.nextTick(() => this.handler?.onReceiveHalfClose());
    }
  }

  sendMetadata(metadata: Metadata): void {
    this.next.sendMetadata(metadata);
  }

  sendMessage(message: unknown, callback: () => void): void {
    this.next.sendMessage(message, callback);
  }

  sendStatus(status: Parameters<Next['sendStatus']>[0]): void {
    this.ticket.end();
    this.next.sendStatus(status);
  }

  getPeer(): string {
    return this.next.getPeer();
  }

  getDeadline(): Deadline {
    return this.next.getDeadline();
  }

  getHost(): string {
    return this.next.getHost();
  }

  getAuthContext(): ReturnType<Next['getAuthContext']> {
    return this.next.getAuthContext();
  }

  getConnectionInfo(): ReturnType<Next['getConnectionInfo']> {
    return this.next.getConnectionInfo();
  }

  getMetricsRecorder(): ReturnType<Next['getMetricsRecorder']> {
    return this.next.getMetricsRecorder();
  }
}

/**
 * Gives grpc-js's call a message decoder of ours (server/message-decoder.ts) that refuses a request
 * over `maxBytes` at its length prefix (RESOURCE_EXHAUSTED), before buffering it, and holds what it
 * buffers in one buffer of the declared size. grpc-js has one limit per server
 * (grpc.max_receive_message_length), copied into each call's decoder and decompression check; the
 * decoder is replaced and the decompression limit narrowed for the call at hand (the first
 * interceptor is handed grpc-js's own call), before it reads anything. Returns false when the call
 * no longer has that shape (a grpc-js upgrade; test/admission.test.ts notices): the strict
 * deserializer then refuses such a request once read, and the budget reserves the server-wide
 * maximum for it.
 */
function takeOverDecoder(call: ServerInterceptingCallInterface, maxBytes: number, admit?: (size: number) => boolean): boolean {
  const internals = call as unknown as { decoder?: { maxReadMessageLength?: unknown; write?: unknown }; maxReceiveMessageSize?: unknown };
  const decoder = internals.decoder;
  if (typeof decoder?.maxReadMessageLength !== 'number' || typeof decoder.write !== 'function' || typeof internals.maxReceiveMessageSize !== 'number') return false;
  const narrow = (limit: number) => (limit === -1 ? maxBytes : Math.min(limit, maxBytes));
  internals.decoder = new ExactMessageDecoder(narrow(decoder.maxReadMessageLength), admit);
  internals.maxReceiveMessageSize = narrow(internals.maxReceiveMessageSize);
  return true;
}

/** The server interceptor that admits or refuses each service call on its metadata. */
export function admissionInterceptor(opts: AdmissionOptions): ServerInterceptor {
  const calls = new CallsPerPrincipal(opts.maxCallsPerPrincipal);
  const budget = new ByteBudget(opts.maxRequestBytesInFlight);
  let warned = false;
  return (descriptor, next) => {
    const method = opts.methods.get(descriptor.path);
    if (!method) {
      takeOverDecoder(next, opts.defaultRequestBytes);
      // Health and reflection: nothing to decide, so grpc-js's call itself (typed as its class, used as the interface).
      return next as ServerInterceptingCall;
    }
    const ticket = new Ticket(calls, budget);
    // Each request message reserves the size its prefix declares, before a byte of it is buffered,
    // and holds it until it is delivered: the budget bounds what is being received, not what
    // methods could declare (a 4 MiB limit must not cost 4 MiB for a 100-byte Append).
    const admit = (size: number): boolean => {
      if (ticket.reserve(size)) return true;
      call.refuseArriving(budgetSpent(descriptor.path));
      return false;
    };
    const atPrefix = takeOverDecoder(next, method.maxRequestBytes, admit);
    if (!atPrefix && !warned) {
      warned = true;
      opts.log.warn({ method: descriptor.path }, "grpc-js's call internals changed: per-method request limits now apply after a request is read, and each call reserves limits.maxReceiveMessageBytes of the request budget");
    }
    // Calls of one request hold budget until it has arrived; streaming requests are bounded per
    // message by the method's limit and per principal by the call bound.
    const singleRequest = method.kind === 'unary' || method.kind === 'serverStream';
    // A call of one request reserves, on its headers, what a typical request needs (the default
    // limit, or its method's if smaller), so a spent budget refuses calls before their bodies; a
    // larger request reserves the rest at its prefix.
    const reserveBytes = !singleRequest ? 0 : atPrefix ? Math.min(method.maxRequestBytes, opts.defaultRequestBytes) : opts.maxReceiveMessageBytes;
    const call = new AdmissionCall(next, descriptor.path, ticket, reserveBytes, opts.authorize);
    // grpc-js types an interceptor's result as its own class; it uses only the call interface.
    return call as unknown as ServerInterceptingCall;
  };
}
