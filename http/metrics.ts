/** Counters and gauges rendered in the Prometheus text exposition format. */

interface Series {
  help: string;
  type: "counter" | "gauge";
  value: number;
}

/** A small registry: names are `atoll_…`, counters end in `_total`. */
export class Metrics {
  #series = new Map<string, Series>();

  /** Declares a counter (idempotent). */
  counter(name: string, help: string): void {
    if (!this.#series.has(name)) this.#series.set(name, { help, type: "counter", value: 0 });
  }

  /** Adds `by` to a declared counter. */
  add(name: string, by = 1): void {
    const series = this.#series.get(name);
    if (series === undefined) throw new TypeError(`Cannot count ${name}: not declared`);
    series.value += by;
  }

  /** Renders the declared series plus `gauges` measured now. */
  render(gauges: Record<string, { help: string; value: number }> = {}): string {
    const lines: string[] = [];
    const all = [...this.#series].concat(
      Object.entries(gauges).map(([name, g]) => [name, { ...g, type: "gauge" as const }]),
    );
    for (const [name, series] of all) {
      lines.push(`# HELP ${name} ${series.help}`, `# TYPE ${name} ${series.type}`);
      lines.push(`${name} ${series.value}`);
    }
    return lines.join("\n") + "\n";
  }
}
