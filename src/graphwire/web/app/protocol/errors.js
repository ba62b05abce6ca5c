/**
 * The one error every decoder throws (docs/protocol.md §8): a §8 code and a message.
 * @module protocol/errors
 */

export class ProtocolError extends Error {
  /**
   * @param {string} code a §8 code, e.g. `malformed_frame`, `unknown_kind`, `too_large`
   * @param {string} message what was wrong
   */
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

/** Shorthand for the most common decode failure. */
export function malformed(message) {
  return new ProtocolError('malformed_frame', message);
}

/** A delta names a keyframe this decoder does not hold: ask the server for a keyframe. */
export class KeyframeMissingError extends ProtocolError {
  constructor(needed, held) {
    super('malformed_frame', `frame applies to keyframe ${needed}, but the keyframe held is ${held}`);
    this.name = 'KeyframeMissingError';
    this.needed = needed;
    this.held = held;
  }
}
