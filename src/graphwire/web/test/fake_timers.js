// Deterministic timers for unit tests: time moves only when the test says so.
export class FakeTimers {
  constructor() {
    this.now = 0;
    this.next = 1;
    this.tasks = new Map();
    this.setTimeout = (fn, ms = 0) => {
      const id = this.next++;
      this.tasks.set(id, { at: this.now + ms, fn });
      return id;
    };
    this.clearTimeout = (id) => { this.tasks.delete(id); };
  }

  /** Run every timer due within `ms`, in time order. */
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let best = null;
      for (const [id, t] of this.tasks) if (t.at <= end && (!best || t.at < best[1].at)) best = [id, t];
      if (!best) break;
      this.tasks.delete(best[0]);
      this.now = best[1].at;
      best[1].fn();
    }
    this.now = end;
  }

  /** Delays of the timers waiting, sorted. */
  pendingDelays() {
    return [...this.tasks.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
}
