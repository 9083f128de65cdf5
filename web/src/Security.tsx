// The signed-in person's own security: an authenticator app (TOTP, with one-time recovery
// codes) and passkeys. Both become second factors for the password sign-in.

import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError, addPasskey, deletePasskey, listPasskeys, totpConfirm, totpEnrol, type Passkey, type TotpEnrolment } from './lib/api';

const when = (ms: number) => (ms ? new Date(ms).toLocaleString() : 'never');
const message = (e: unknown) => (e instanceof ApiError ? e.detail || e.title : e instanceof Error ? e.message : String(e));

export function Security() {
  const [passkeys, setPasskeys] = useState<Passkey[]>([]);
  const [name, setName] = useState('');
  const [enrolment, setEnrolment] = useState<TotpEnrolment>();
  const [code, setCode] = useState('');
  const [recovery, setRecovery] = useState<string[]>();
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();

  const refresh = useCallback(() => {
    listPasskeys()
      .then(setPasskeys)
      .catch((e) => setError(message(e)));
  }, []);
  useEffect(refresh, [refresh]);

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    try {
      const p = await addPasskey(name.trim() || 'passkey');
      setNotice(`Passkey “${p.name}” added: it is now asked for after your password.`);
      setName('');
      refresh();
    } catch (err) {
      setError(`The passkey was not added: ${message(err)}`);
    }
  };

  const remove = async (p: Passkey) => {
    setError(undefined);
    try {
      await deletePasskey(p.credential_id);
      setNotice(`Passkey “${p.name}” removed.`);
      refresh();
    } catch (err) {
      setError(message(err));
    }
  };

  const confirm = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    try {
      const r = await totpConfirm(code.trim());
      setRecovery(r.recovery_codes);
      setEnrolment(undefined);
      setCode('');
    } catch (err) {
      setError(message(err));
    }
  };

  return (
    <main className="security">
      <h2>Sign-in security</h2>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {notice && <p className="notice">{notice}</p>}

      <section aria-label="Passkeys">
        <h3>Passkeys</h3>
        <p className="muted">A passkey on this device or a security key, asked for after your password.</p>
        <ul className="passkeys" data-testid="passkeys">
          {passkeys.length === 0 && <li className="muted">No passkey yet.</li>}
          {passkeys.map((p) => (
            <li key={p.credential_id}>
              <strong>{p.name}</strong> <small className="muted">added {when(p.created_at)}, last used {when(p.last_used_at)}</small>{' '}
              <button onClick={() => void remove(p)}>Remove</button>
            </li>
          ))}
        </ul>
        <form onSubmit={add}>
          <input aria-label="Passkey name" placeholder="Name, e.g. reading room PC" value={name} onChange={(e) => setName(e.target.value)} maxLength={64} />
          <button type="submit">Add a passkey</button>
        </form>
      </section>

      <section aria-label="Authenticator app">
        <h3>Authenticator app</h3>
        {!enrolment && !recovery && (
          <button
            onClick={() => {
              setError(undefined);
              totpEnrol()
                .then(setEnrolment)
                .catch((e) => setError(message(e)));
            }}
          >
            Set up an authenticator app
          </button>
        )}
        {enrolment && (
          <form onSubmit={confirm}>
            <p>
              Add this account to your authenticator app: open <a href={enrolment.uri}>the setup link</a> on the phone, or type the key{' '}
              <code data-testid="totp-secret">{enrolment.secret.replace(/(.{4})/g, '$1 ').trim()}</code>. Then enter the 6-digit code it shows.
            </p>
            <input aria-label="Code from the app" inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} />
            <button type="submit">Confirm</button>
          </form>
        )}
        {recovery && (
          <div data-testid="recovery-codes">
            <p>
              The authenticator app is now required at sign-in. Keep these one-time recovery codes somewhere safe: they are shown only now.
            </p>
            <ul className="codes">
              {recovery.map((c) => (
                <li key={c}>
                  <code>{c}</code>
                </li>
              ))}
            </ul>
          </div>
        )}
      </section>
    </main>
  );
}
