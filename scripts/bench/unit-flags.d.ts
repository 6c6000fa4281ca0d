/** The Node flags of the shipped unit's ExecStart (unit-flags.js). */
export function unitNodeFlags(): string[];
