import { useEffect, useState, type FormEvent } from 'react';
import { ApiError, login, passkeySignIn, signInMethods, type SignedIn } from './lib/api';

export function Login({ onSignedIn, notice }: { onSignedIn: (s: SignedIn) => void; notice?: string }) {
  const [tenant, setTenant] = useState(() => localStorage.getItem('radris.tenant') ?? 'default');
  const [user, setUser] = useState(() => localStorage.getItem('radris.user') ?? '');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  /** the server's passkey challenge after a right password (401 with `mfa_ticket`) */
  const [challenge, setChallenge] = useState<Record<string, unknown>>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [sso, setSso] = useState(false);
  useEffect(() => {
    signInMethods()
      .then((m) => setSso(m.oidc))
      .catch(() => setSso(false));
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const s = await login(tenant.trim(), user.trim(), password, code.trim() || undefined);
      localStorage.setItem('radris.tenant', tenant.trim());
      localStorage.setItem('radris.user', user.trim());
      setPassword('');
      onSignedIn(s);
    } catch (err) {
      if (err instanceof ApiError) {
        if (/second factor|code/i.test(err.detail) && !code) setNeedCode(true);
        setChallenge(err.body.mfa_ticket && err.body.webauthn ? err.body : undefined);
        setError(err.status === 429 ? 'Too many attempts: wait a minute and try again.' : err.detail || err.title);
      } else {
        setError('The server cannot be reached.');
      }
    } finally {
      setBusy(false);
    }
  };

  const usePasskey = async () => {
    if (!challenge) return;
    setBusy(true);
    setError(undefined);
    try {
      const s = await passkeySignIn(challenge);
      localStorage.setItem('radris.tenant', tenant.trim());
      localStorage.setItem('radris.user', user.trim());
      setPassword('');
      onSignedIn(s);
    } catch (err) {
      // the ticket is single use: a new attempt starts from the password
      setChallenge(undefined);
      setError(err instanceof ApiError ? err.detail || err.title : `The passkey was not used (${err instanceof Error ? err.message : String(err)}).`);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>RADRIS</h1>
        {notice && <p className="notice">{notice}</p>}
        <label>
          Organisation
          <input name="tenant" value={tenant} onChange={(e) => setTenant(e.target.value)} autoComplete="organization" required />
        </label>
        <label>
          User
          <input name="user" value={user} onChange={(e) => setUser(e.target.value)} autoComplete="username" required autoFocus />
        </label>
        <label>
          Password
          <input name="password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="current-password" required />
        </label>
        {challenge && (
          <button type="button" className="passkey" onClick={() => void usePasskey()} disabled={busy}>
            Use your passkey
          </button>
        )}
        {needCode && (
          <label>
            {challenge ? 'Or an authenticator or recovery code' : 'Authenticator or recovery code'}
            <input name="code" value={code} onChange={(e) => setCode(e.target.value)} autoComplete="one-time-code" inputMode="numeric" autoFocus />
          </label>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {sso && (
          <p className="muted small">
            Single sign-on: <a href="/api/v1/auth/oidc/login">sign in with your organisation</a>
          </p>
        )}
      </form>
    </main>
  );
}
