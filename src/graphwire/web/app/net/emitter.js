/**
 * A minimal event emitter (works in pages, workers and Node alike).
 * @module net/emitter
 */
export class Emitter {
  constructor() {
    this.listeners = new Map();
  }

  /** Listen to `type`; returns a function that stops listening. */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  /** Call every listener of `type` with `detail`. */
  emit(type, detail) {
    const set = this.listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) fn(detail);
  }
}
