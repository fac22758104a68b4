/**
 * Rates from two samples of `GET /v1/stats`: per volume (IOPS, bytes per
 * second, mean latency, summed over the members that serve it) and per member
 * (IOPS, CPU). Counters are cumulative on each member and restart at zero
 * when a volume is opened again; a counter that went down gives no rate for
 * that sample.
 */
export class Rates {
  /** `member/volume` (or `member`) → the counters of the previous sample. */
  #previous = new Map();

  /**
   * Takes one sample (`members` as `GET /v1/stats` lists them) and returns
   * `{ volumes: Map(name → rate), members: Map(id → rate) }`.
   */
  update(members) {
    const volumes = new Map();
    const memberRates = new Map();
    const seen = new Map();
    for (const member of members) {
      if (member.stats === undefined) continue;
      const { stats } = member;
      const memberRate = { iops: 0, bytesPerSecond: 0, cpu: null, volumesOpen: 0 };
      const cpu = this.#delta(`${member.id}`, stats.sampledAtMs, [stats.figures.cpuSeconds ?? 0]);
      if (cpu !== null) memberRate.cpu = cpu.values[0] / cpu.seconds;
      seen.set(`${member.id}`, this.#sample(stats.sampledAtMs, [stats.figures.cpuSeconds ?? 0]));
      for (const volume of stats.volumes) {
        const key = `${member.id}/${volume.name}`;
        const counters = [
          ...volume.requests,
          ...volume.bytes,
          ...volume.latencySumSeconds,
        ];
        seen.set(key, this.#sample(stats.sampledAtMs, counters));
        const rate = volumes.get(volume.name) ?? emptyRate();
        rate.members.push(member.id);
        rate.inFlight += volume.inFlight;
        const delta = this.#delta(key, stats.sampledAtMs, counters);
        if (delta !== null) addDelta(rate, delta, stats.operations);
        volumes.set(volume.name, rate);
        memberRate.volumesOpen++;
        if (delta !== null) {
          memberRate.iops += rateOf(delta, 0, stats.operations.length);
          memberRate.bytesPerSecond += rateOf(
            delta,
            stats.operations.length,
            2 * stats.operations.length,
          );
        }
      }
      memberRates.set(member.id, memberRate);
    }
    this.#previous = seen;
    for (const rate of volumes.values()) {
      rate.latencySeconds = rate.requestsInInterval > 0
        ? rate.latencySumInInterval / rate.requestsInInterval
        : null;
    }
    return { volumes, members: memberRates };
  }

  #sample(atMs, counters) {
    return { atMs, counters };
  }

  /** Differences since the previous sample of `key`, or null (none, reset, no time). */
  #delta(key, atMs, counters) {
    const previous = this.#previous.get(key);
    if (previous === undefined || atMs <= previous.atMs) return null;
    const values = counters.map((value, i) => value - (previous.counters[i] ?? 0));
    if (values.some((value) => value < 0)) return null;
    return { seconds: (atMs - previous.atMs) / 1000, values };
  }
}

function emptyRate() {
  return {
    iops: 0,
    readIops: 0,
    writeIops: 0,
    bytesPerSecond: 0,
    requestsInInterval: 0,
    latencySumInInterval: 0,
    latencySeconds: null,
    inFlight: 0,
    members: [],
  };
}

/** Sum of `delta.values[from..to)` per second. */
function rateOf(delta, from, to) {
  let sum = 0;
  for (let i = from; i < to; i++) sum += delta.values[i];
  return sum / delta.seconds;
}

function addDelta(rate, delta, operations) {
  const n = operations.length;
  const read = operations.indexOf("read");
  const write = operations.indexOf("write");
  rate.iops += rateOf(delta, 0, n);
  rate.readIops += delta.values[read] / delta.seconds;
  rate.writeIops += delta.values[write] / delta.seconds;
  rate.bytesPerSecond += rateOf(delta, n, 2 * n);
  rate.requestsInInterval += rateOf(delta, 0, n) * delta.seconds;
  rate.latencySumInInterval += rateOf(delta, 2 * n, 3 * n) * delta.seconds;
}
