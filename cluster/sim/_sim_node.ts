/**
 * A member of the metadata simulation: its durable state (acceptor states, the
 * node configuration) and, while it runs, the production processes built on
 * them with the simulated network, clock and randomness.
 *
 * @module
 */
import {
  Acceptor,
  type AcceptorLink,
  type AcceptorState,
  type MetaConfig,
  NodeConfig,
  type NodeConfigState,
  Proposer,
  Reconfigurer,
} from "../meta/mod.ts";
import type { MetaSim } from "./meta_sim.ts";

/** Lag of a member's view behind a status change, at most. */
const viewLagMsMax = 3000;

export type Status = "alive" | "dead" | "left";

/** A member's durable state and, while it runs, its processes. */
export interface SimNode {
  id: string;
  incarnation: number;
  states: Map<string, AcceptorState>;
  config: NodeConfigState;
  clockOffsetMs: number;
  /** Status changes as the world sees them, in time order. */
  history: { atMs: number; status: Status }[];
  runtime: Runtime | null;
}

export interface Runtime {
  configs: NodeConfig;
  acceptor: Acceptor;
  proposer: Proposer;
  reconfigurer: Reconfigurer;
}

/** Builds the processes of `node` for a new incarnation and starts its reconfiguration loop. */
export function startRuntime(sim: MetaSim, node: SimNode): void {
  const incarnation = ++node.incarnation;
  sim.world.setIncarnation(node.id, incarnation);
  const world = sim.world;
  const configs = new NodeConfig(node.config, {
    save: (state) => Promise.resolve(void (node.config = structuredClone(state))),
  });
  const acceptor = new Acceptor({
    load: (key) => Promise.resolve(copyAcceptorState(node.states.get(key)) ?? null),
    save: (key, state) => Promise.resolve(void node.states.set(key, copyAcceptorState(state))),
  }, configs);
  const remote = (id: string) => sim.nodes.get(id)?.runtime ?? null;
  const call = <T>(to: string, handle: (runtime: Runtime) => Promise<T>) =>
    world.call(node.id, incarnation, to, () => {
      const target = remote(to);
      return target === null ? Promise.reject(new Error("down")) : handle(target);
    });
  const link = (id: string): AcceptorLink | null => {
    if (id === node.id) return acceptor;
    const member = sim.view(node).find((member) => member.id === id);
    if (member === undefined || member.status !== "alive") return null;
    const traced = <T>(what: string, key: string, reply: Promise<T>) => {
      if (sim.trace !== null) {
        const line = `${node.id} ${what} ${key} at ${id}:`;
        reply.then(
          (r) => sim.note(`${line} ${describeReply(r)}`),
          (e) => sim.note(`${line} ${e.message}`),
        );
      }
      return reply;
    };
    return {
      prepare: (key, ballot, config) =>
        traced(
          `prepare ${ballot.epoch}.${ballot.counter}`,
          key,
          call(id, (r) => r.acceptor.prepare(key, ballot, config)),
        ),
      accept: (key, ballot, register, config) =>
        traced(
          `accept ${ballot.epoch}.${ballot.counter} v${register.version}`,
          key,
          call(id, (r) => r.acceptor.accept(key, ballot, register, config)),
        ),
      peek: (key, config) => call(id, (r) => r.acceptor.peek(key, config)),
    };
  };
  const random = () => world.random.next();
  const sleep = (ms: number) => world.sleep(node.id, incarnation, ms);
  const clock = { now: () => world.now() + node.clockOffsetMs, sleep };
  const proposer: Proposer = new Proposer({
    node: `${node.id}.${incarnation}`,
    configs: {
      current: () => configs.current(),
      install: (config) => configs.install(config),
      refresh: () => reconfigurer.refresh(),
    },
    link,
    random,
    clock,
  });
  const reconfigurer: Reconfigurer = new Reconfigurer({
    selfId: node.id,
    configs,
    proposer,
    members: () => sim.view(node),
    localKeys: () => [...node.states.keys()],
    peers: {
      keys: (id) => call(id, () => Promise.resolve([...sim.nodes.get(id)!.states.keys()])),
      install: (id, config: MetaConfig) => call(id, (r) => r.configs.install(config)),
      configOf: (id) => call(id, (r) => Promise.resolve(r.configs.current())),
    },
    clock,
  });
  node.runtime = { configs, acceptor, proposer, reconfigurer };
  configs.onInstall((config) =>
    sim.note(
      `${node.id} installs epoch ${config.epoch} ${config.voters}${
        config.next === null ? "" : ` -> ${config.next}`
      }`,
    )
  );
  const tick = async () => {
    await reconfigurer.tick().catch(() => {});
    await sleep(1000);
    tick();
  };
  sleep(world.random.next() * 1000).then(tick);
}

/**
 * A deep copy of an acceptor state (what a disk hands back is not the object
 * saved): structuredClone's result, at a fraction of its cost in the soak.
 */
export function copyAcceptorState<T extends AcceptorState | undefined>(state: T): T {
  if (state === undefined) return state;
  const { register } = state as AcceptorState;
  return {
    promised: state.promised === null ? null : { ...state.promised },
    accepted: state.accepted === null ? null : { ...state.accepted },
    register: { ...register, value: register.value === null ? null : register.value.slice() },
  } as T;
}

/** A member's lag in seeing change `index` of `member`, fixed by the seed. */
export function lagMs(seed: number, viewer: string, member: string, index: number): number {
  let h = seed >>> 0;
  for (const char of `${viewer}/${member}/${index}`) {
    h = Math.imul(h ^ char.charCodeAt(0), 0x9e3779b1);
  }
  return ((h >>> 0) % 1000) / 1000 * viewLagMsMax;
}

/** A reply in a trace line, values as text. */
function describeReply(reply: unknown): string {
  return JSON.stringify(
    reply,
    (key, value) =>
      key === "value" && value instanceof Uint8Array ? new TextDecoder().decode(value) : value,
  );
}
