import { useEffect, useRef, useState } from 'react';
import { whoami } from './lib/api';
import { clock, idleState, type IdleState } from './lib/idle';

const WARN_BEFORE_S = 120;
/** While the user works without server requests (window/level, scrolling cached images), the
 * server session is kept alive with a light request at most this often. */
const KEEPALIVE_MS = 60_000;

/** Signs out after `idleTimeoutS` without input, warning two minutes before. */
export function IdleWarning({ idleTimeoutS, onExpired }: { idleTimeoutS: number; onExpired: () => void }) {
  const last = useRef(Date.now());
  const lastPing = useRef(Date.now());
  const [state, setState] = useState<IdleState>({ kind: 'active' });

  useEffect(() => {
    const touch = () => {
      last.current = Date.now();
      if (last.current - lastPing.current > KEEPALIVE_MS) {
        lastPing.current = last.current;
        whoami().catch(() => {});
      }
    };
    const events = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;
    for (const e of events) window.addEventListener(e, touch, { passive: true });
    const timer = window.setInterval(() => {
      const s = idleState(last.current, Date.now(), idleTimeoutS, WARN_BEFORE_S);
      setState(s);
      if (s.kind === 'expired') onExpired();
    }, 1000);
    return () => {
      for (const e of events) window.removeEventListener(e, touch);
      window.clearInterval(timer);
    };
  }, [idleTimeoutS, onExpired]);

  if (state.kind !== 'warning') return null;
  return (
    <div className="idle-warning" role="alertdialog" aria-live="assertive">
      You will be signed out in {clock(state.secondsLeft)} for inactivity.{' '}
      <button
        onClick={() => {
          last.current = Date.now();
          lastPing.current = last.current;
          whoami().catch(() => {});
          setState({ kind: 'active' });
        }}
      >
        Stay signed in
      </button>
    </div>
  );
}
