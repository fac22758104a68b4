/**
 * The handshake that opens a link: a mutual challenge-response with the cluster
 * key, once per connection.
 *
 * ```
 * client → server  preamble, hello:  key id (8), cluster id (16), client nonce (32),
 *                                    id length (1), address length (1), member id, address
 * server → client  challenge:        key id (8), cluster id (16), server nonce (32),
 *                                    echo of the client nonce (32), id length (1), member id,
 *                                    server proof (32)
 * client → server  proof:            echo of the server nonce (32), client proof (32)
 * server → client  welcome (empty), or refusal: reason (1), detail (UTF-8)
 * ```
 *
 * server proof = HMAC(key, "atoll link server\n" ‖ hello ‖ challenge without its proof)
 * client proof = HMAC(key, "atoll link client\n" ‖ hello ‖ challenge ‖ echo)
 *
 * Each proof covers both nonces, both cluster ids and both member ids: a proof
 * is good for one connection only (the other side's nonce is fresh), so
 * captured handshake bytes replayed to either side are refused, and the labels
 * keep a server's proof from being reflected back as a client's. The echoes let
 * a refusal tell a replay from a forgery. No clock is read.
 */
import { timingSafeEqual } from "node:crypto";
import { randomBytes } from "../../core/mod.ts";
import {
  type ClusterKey,
  RefusalError,
  type RefusalReason,
  refusalReasons,
  toHex,
} from "./auth.ts";
import { clusterIdBytes, type ClusterIdentity } from "./identity.ts";
import {
  encodeBareFrame,
  type Frame,
  FrameKind,
  handshakeBodyBytesMax,
  handshakeNameBytesMax,
  linkPreamble,
  nonceBytes,
  proofBytes,
  refusalDetailBytesMax,
} from "./link_wire.ts";

/** What a handshake reads and writes frames through. */
export interface FrameChannel {
  readFrame(bodyBytesMax: number): Promise<Frame | null>;
  send(parts: Uint8Array[]): void;
}

/** Who is on each end of a handshake. */
export interface HandshakeParty {
  key: ClusterKey;
  identity: ClusterIdentity;
  /** This member's id, bound into both proofs. */
  selfId: string;
}

/** What a completed handshake established. */
export interface LinkPeer {
  /** The peer's member id, as its proof vouches. */
  id: string;
  /** The cluster address the peer says it listens on ("" when it did not say). */
  address: string;
  /** This node's cluster id when the link opened: the link closes if it changes. */
  clusterId: string | null;
}

/** The other side refused the handshake (a reason we did not decide, so not ours to count). */
export class PeerRefusedError extends Error {
  override name = "PeerRefusedError";
  constructor(readonly reason: string, readonly detail: string) {
    super(`refused (${reason}): ${detail}`);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const serverLabel = encoder.encode("atoll link server\n");
const clientLabel = encoder.encode("atoll link client\n");

/**
 * Opens a link from the client side; `self.address` is told to the server for
 * its logs. Throws RefusalError when we refuse the server, PeerRefusedError
 * when it refuses us.
 */
export async function openHandshake(
  channel: FrameChannel,
  self: HandshakeParty & { address: string },
): Promise<LinkPeer> {
  const ourClusterId = self.identity.current();
  const nonce = randomBytes(nonceBytes);
  const hello = encodeHello(self.key.id, ourClusterId, nonce, self.selfId, self.address);
  channel.send([linkPreamble, encodeBareFrame(FrameKind.hello, 0, hello)]);
  const challenge = await expect(channel, FrameKind.challenge);
  const fields = new Fields(challenge);
  const keyId = fields.bytes(8);
  const theirClusterId = clusterIdOf(fields.bytes(clusterIdBytes));
  const theirNonce = fields.bytes(nonceBytes);
  const echo = fields.bytes(nonceBytes);
  const id = fields.name();
  const signed = challenge.subarray(0, fields.at);
  const proof = fields.bytes(proofBytes);
  fields.end();
  if (!timingSafeEqual(keyId, self.key.id)) throw anotherKey();
  if (!timingSafeEqual(echo, nonce)) throw replayed();
  if (!timingSafeEqual(proof, self.key.mac(serverLabel, hello, signed))) throw badProof();
  const answer = new Uint8Array(nonceBytes + proofBytes);
  answer.set(theirNonce);
  answer.set(self.key.mac(clientLabel, hello, challenge, theirNonce), nonceBytes);
  channel.send([encodeBareFrame(FrameKind.proof, 0, answer)]);
  // Checked once the server answered our proof, so that it counted the mismatch too.
  const verdict = await expect(channel, FrameKind.welcome).then(() => null, (error) => error);
  checkClusterIds(theirClusterId, ourClusterId);
  if (verdict !== null) throw verdict;
  if (ourClusterId === null && theirClusterId !== null) self.identity.adopt(theirClusterId);
  return { id, address: "", clusterId: self.identity.current() };
}

/**
 * Accepts a link on the server side, once the preamble was read. `onHello` is
 * told the address the client gives (before it is vouched for: for logs).
 * Throws RefusalError when we refuse the client (the caller counts it and
 * answers a refusal), PeerRefusedError when it refuses us.
 */
export async function acceptHandshake(
  channel: FrameChannel,
  self: HandshakeParty,
  onHello: (address: string) => void,
): Promise<LinkPeer> {
  const hello = await expect(channel, FrameKind.hello);
  const fields = new Fields(hello);
  const keyId = fields.bytes(8);
  const theirClusterId = clusterIdOf(fields.bytes(clusterIdBytes));
  const theirNonce = fields.bytes(nonceBytes);
  const [id, address] = fields.names();
  fields.end();
  onHello(address);
  if (!timingSafeEqual(keyId, self.key.id)) throw anotherKey();
  const ourClusterId = self.identity.current();
  const nonce = randomBytes(nonceBytes);
  const signed = encodeChallenge(self.key.id, ourClusterId, nonce, theirNonce, self.selfId);
  const challenge = new Uint8Array(signed.length + proofBytes);
  challenge.set(signed);
  challenge.set(self.key.mac(serverLabel, hello, signed), signed.length);
  channel.send([encodeBareFrame(FrameKind.challenge, 0, challenge)]);
  const answer = new Fields(await expect(channel, FrameKind.proof));
  const echo = answer.bytes(nonceBytes);
  const proof = answer.bytes(proofBytes);
  answer.end();
  if (!timingSafeEqual(echo, nonce)) throw replayed();
  if (!timingSafeEqual(proof, self.key.mac(clientLabel, hello, challenge, nonce))) {
    throw badProof();
  }
  checkClusterIds(theirClusterId, ourClusterId);
  if (ourClusterId === null && theirClusterId !== null) self.identity.adopt(theirClusterId);
  channel.send([encodeBareFrame(FrameKind.welcome, 0, new Uint8Array())]);
  return { id, address, clusterId: self.identity.current() };
}

/** The body of a refusal frame. */
export function encodeRefusal(refusal: RefusalError): Uint8Array {
  const detail = encoder.encode(refusal.detail).subarray(0, refusalDetailBytesMax);
  const body = new Uint8Array(1 + detail.length);
  body[0] = refusalReasons.indexOf(refusal.reason);
  body.set(detail, 1);
  return body;
}

function encodeHello(
  keyId: Uint8Array,
  clusterId: string | null,
  nonce: Uint8Array,
  id: string,
  address: string,
): Uint8Array {
  const [idBytes, addressBytes] = [nameBytes(id), nameBytes(address)];
  const body = new Uint8Array(
    8 + clusterIdBytes + nonceBytes + 2 + idBytes.length + addressBytes.length,
  );
  body.set(keyId);
  body.set(clusterIdBytesOf(clusterId), 8);
  body.set(nonce, 8 + clusterIdBytes);
  let at = 8 + clusterIdBytes + nonceBytes;
  body[at++] = idBytes.length;
  body[at++] = addressBytes.length;
  body.set(idBytes, at);
  body.set(addressBytes, at + idBytes.length);
  return body;
}

function encodeChallenge(
  keyId: Uint8Array,
  clusterId: string | null,
  nonce: Uint8Array,
  echo: Uint8Array,
  id: string,
): Uint8Array {
  const idBytes = nameBytes(id);
  const body = new Uint8Array(8 + clusterIdBytes + 2 * nonceBytes + 1 + idBytes.length);
  body.set(keyId);
  body.set(clusterIdBytesOf(clusterId), 8);
  body.set(nonce, 8 + clusterIdBytes);
  body.set(echo, 8 + clusterIdBytes + nonceBytes);
  body[8 + clusterIdBytes + 2 * nonceBytes] = idBytes.length;
  body.set(idBytes, 8 + clusterIdBytes + 2 * nonceBytes + 1);
  return body;
}

/** The body of the next frame, which must be of `kind` (a refusal throws PeerRefusedError). */
async function expect(channel: FrameChannel, kind: number): Promise<Uint8Array> {
  const frame = await channel.readFrame(handshakeBodyBytesMax);
  if (frame === null) throw new Deno.errors.UnexpectedEof("the peer closed during the handshake");
  if (frame.kind === FrameKind.refusal) {
    const reason = refusalReasons[frame.body[0]] ?? "unknown";
    throw new PeerRefusedError(reason, decoder.decode(frame.body.subarray(1)));
  }
  if (frame.kind !== kind || frame.id !== 0) {
    throw malformed(`a frame of kind ${frame.kind} where ${kind} was due`);
  }
  return frame.body;
}

/** Reads the fields of a handshake body in order; a short or long body is malformed. */
class Fields {
  at = 0;
  constructor(readonly body: Uint8Array) {}

  bytes(length: number): Uint8Array {
    if (this.at + length > this.body.length) throw malformed("a handshake message too short");
    this.at += length;
    return this.body.subarray(this.at - length, this.at);
  }

  name(): string {
    return decoder.decode(this.bytes(this.bytes(1)[0]));
  }

  names(): [string, string] {
    const [first, second] = this.bytes(2);
    return [decoder.decode(this.bytes(first)), decoder.decode(this.bytes(second))];
  }

  end(): void {
    if (this.at !== this.body.length) throw malformed("a handshake message too long");
  }
}

function checkClusterIds(theirs: string | null, ours: string | null): void {
  if (theirs !== null && ours !== null && theirs !== ours) {
    throw new RefusalError(
      "cluster-id",
      `the sender belongs to cluster ${theirs}, this node to cluster ${ours}`,
    );
  }
}

function nameBytes(name: string): Uint8Array {
  const bytes = encoder.encode(name);
  if (bytes.length > handshakeNameBytesMax) {
    throw new RangeError(`Cannot open a link: "${name}" is over ${handshakeNameBytesMax} bytes`);
  }
  return bytes;
}

function clusterIdBytesOf(id: string | null): Uint8Array {
  const bytes = new Uint8Array(clusterIdBytes);
  if (id !== null) {
    for (let i = 0; i < clusterIdBytes; i++) bytes[i] = parseInt(id.slice(2 * i, 2 * i + 2), 16);
  }
  return bytes;
}

function clusterIdOf(bytes: Uint8Array): string | null {
  return bytes.every((byte) => byte === 0) ? null : toHex(bytes);
}

const refusal = (reason: RefusalReason, detail: string) => new RefusalError(reason, detail);
const malformed = (what: string) => refusal("authentication", `malformed handshake (${what})`);
const anotherKey = () => refusal("authentication", "sealed with another cluster key");
const replayed = () =>
  refusal("replay", "a handshake answer made for another connection (replayed)");
const badProof = () => refusal("authentication", "bad proof (forged, or corrupted)");
