// Idle logoff. The server ends a session after `idleTimeout` seconds without a request; the UI
// warns `warnBefore` seconds ahead so the user can stay signed in, and signs out at the end
// (a shared reading-room workstation must not stay open on a patient).

export type IdleState = { kind: 'active' } | { kind: 'warning'; secondsLeft: number } | { kind: 'expired' };

export function idleState(lastActivityMs: number, nowMs: number, idleTimeoutS: number, warnBeforeS: number): IdleState {
  const left = idleTimeoutS - (nowMs - lastActivityMs) / 1000;
  if (left <= 0) return { kind: 'expired' };
  if (left <= warnBeforeS) return { kind: 'warning', secondsLeft: Math.ceil(left) };
  return { kind: 'active' };
}

/** `mm:ss` for the warning banner. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
