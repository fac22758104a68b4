/**
 * The simulator's priority queue: a min-heap of events ordered by time, ties broken by
 * insertion order, so the same schedule always pops in the same order. Four children per
 * node (half the depth of a binary heap), and each event knows its place, so a cancelled
 * timer leaves at once instead of weighing on the heap until its time (suspicion timers are
 * mostly cancelled, tens of seconds early).
 *
 * @module
 */

/** Something scheduled at `time`; `seq` is its insertion number, `index` its place (-1: out). */
export interface QueuedEvent {
  time: number;
  seq: number;
  index: number;
}

function before(a: QueuedEvent, b: QueuedEvent): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}

/** Min-heap of events by (time, seq). */
export class EventQueue<E extends QueuedEvent> {
  #heap: E[] = [];
  #seq = 0;

  /** Events queued. */
  get size(): number {
    return this.#heap.length;
  }

  /** Gives `event` the next insertion number and queues it. */
  push(event: E): void {
    event.seq = this.#seq++;
    this.#heap.push(event);
    this.#up(event, this.#heap.length - 1);
  }

  /** The earliest event, without removing it. */
  peek(): E | undefined {
    return this.#heap[0];
  }

  /** Removes and returns the earliest event. */
  pop(): E | undefined {
    const top = this.#heap[0];
    if (top !== undefined) this.remove(top);
    return top;
  }

  /** Takes `event` out of the queue, if it is in. */
  remove(event: E): void {
    const heap = this.#heap;
    const i = event.index;
    if (i < 0 || heap[i] !== event) return;
    event.index = -1;
    const last = heap.pop()!;
    if (last === event) return;
    heap[i] = last;
    if (i > 0 && before(last, heap[(i - 1) >> 2])) {
      this.#up(last, i);
    } else {
      this.#down(last, i);
    }
  }

  #up(event: E, from: number): void {
    const heap = this.#heap;
    let i = from;
    while (i > 0) {
      const parentIndex = (i - 1) >> 2;
      const parent = heap[parentIndex];
      if (!before(event, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = parentIndex;
    }
    heap[i] = event;
    event.index = i;
  }

  #down(event: E, from: number): void {
    const heap = this.#heap;
    const n = heap.length;
    let i = from;
    for (;;) {
      const first = 4 * i + 1;
      if (first >= n) break;
      let best = first;
      const end = first + 4 < n ? first + 4 : n;
      for (let c = first + 1; c < end; c += 1) {
        if (before(heap[c], heap[best])) best = c;
      }
      if (!before(heap[best], event)) break;
      heap[i] = heap[best];
      heap[i].index = i;
      i = best;
    }
    heap[i] = event;
    event.index = i;
  }
}
