// The application shell: sign-in, the signed-in user and tenant, idle logoff, and the pages:
// the study list at `/`, the viewer at `/viewer/<study UID>[?prior=<UID>]`, the security
// settings at `/security`, the RIS pages (`/orders`, `/schedule`, `/tech`, `/reading`,
// `/reconciliation`, `/dashboard`), the quality-assurance page at `/qa` (peer review, quality
// figures) and the report editor at `/report/<order id>`, loaded on demand.

import { Suspense, lazy, useCallback, useEffect, useRef, useState, type ReactNode } from 'react';
import { logout, setUnauthenticatedHandler, whoami, type WhoAmI } from './lib/api';
import { emptySearch, type StudySearch } from './lib/query';
import { IdleWarning } from './IdleWarning';
import { Login } from './Login';
import { StudyList } from './StudyList';
import { Security } from './Security';
import { resetMetrics } from './metrics';
import type { RisPageName } from './ris/RisPage';

// Cornerstone3D is large: the study list loads without it, then fetches it in the background
// (StudyList's prewarm). Once loaded, the viewer is rendered directly: going through Suspense
// again would hold the page back (React throttles revealing suspended content by ~300 ms).
type ViewerModule = typeof import('./viewer/Viewer');
let viewerModule: ViewerModule | undefined;
const viewerImport = () =>
  import('./viewer/Viewer').then((m) => {
    viewerModule = m;
    return m;
  });
const LazyViewer = lazy(() => viewerImport().then((m) => ({ default: m.Viewer })));
export function loadViewer(): Promise<ViewerModule> {
  return viewerImport();
}

// The RIS pages are a chunk of their own, fetched when one is first shown.
const LazyRis = lazy(() => import('./ris/RisPage').then((m) => ({ default: m.RisPage })));
// The report editor likewise.
const LazyReport = lazy(() => import('./report/ReportPage').then((m) => ({ default: m.ReportPage })));
// And the quality-assurance page.
const LazyQa = lazy(() => import('./qa/QaPage').then((m) => ({ default: m.QaPage })));

/** The RIS pages by path, in the top bar's order. */
const RIS_PAGES: { page: RisPageName; path: string; label: string }[] = [
  { page: 'orders', path: '/orders', label: 'Orders' },
  { page: 'schedule', path: '/schedule', label: 'Schedule' },
  { page: 'tech', path: '/tech', label: 'Technologist' },
  { page: 'reading', path: '/reading', label: 'Reading' },
  { page: 'reconciliation', path: '/reconciliation', label: 'Reconciliation' },
  { page: 'dashboard', path: '/dashboard', label: 'Dashboard' },
];

/** The server's idle timeout (the sign-in answer tells it; 15 minutes by default). */
const DEFAULT_IDLE_S = 15 * 60;

interface Route {
  page: 'list' | 'viewer' | 'security' | 'report' | 'qa' | RisPageName;
  studyUid?: string;
  priorUid?: string;
  orderId?: string;
}

function parseRoute(): Route {
  const m = /^\/viewer\/([0-9.]+)\/?$/.exec(location.pathname);
  if (m) {
    const prior = new URLSearchParams(location.search).get('prior') ?? undefined;
    return { page: 'viewer', studyUid: m[1], priorUid: prior && /^[0-9.]+$/.test(prior) ? prior : undefined };
  }
  if (location.pathname === '/security') return { page: 'security' };
  if (/^\/qa\/?$/.test(location.pathname)) return { page: 'qa' };
  const r = /^\/report\/([^/]+)\/?$/.exec(location.pathname);
  if (r) {
    try {
      return { page: 'report', orderId: decodeURIComponent(r[1]) };
    } catch {
      return { page: 'list' };
    }
  }
  const path = location.pathname.replace(/\/+$/, '');
  const ris = RIS_PAGES.find((p) => p.path === path);
  if (ris) return { page: ris.page };
  return { page: 'list' };
}

function savedSearch(): StudySearch {
  try {
    return { ...emptySearch, ...JSON.parse(sessionStorage.getItem('radris.search') ?? '{}') };
  } catch {
    return emptySearch;
  }
}

/** A link that changes the page without reloading the app. */
function NavLink({ to, go, className, children, current }: { to: string; go: (path: string) => void; className: string; children: ReactNode; current?: boolean }) {
  return (
    <a
      className={className}
      href={to}
      aria-current={current ? 'page' : undefined}
      onClick={(e) => {
        e.preventDefault();
        go(to);
      }}
    >
      {children}
    </a>
  );
}

export function App() {
  const [me, setMe] = useState<WhoAmI | null | undefined>(undefined);
  const [idleS, setIdleS] = useState(DEFAULT_IDLE_S);
  const [notice, setNotice] = useState<string>();
  const [route, setRoute] = useState<Route>(parseRoute);

  useEffect(() => {
    setUnauthenticatedHandler(() => {
      // a request that was in flight when the app signed out (idle logoff) comes back 401
      // too: it must not replace the reason already shown
      setNotice((shown) => shown ?? 'Your session has ended. Please sign in again.');
      setMe(null);
    });
    whoami()
      .then(setMe)
      .catch(() => setMe(null));
    const onPop = () => setRoute(parseRoute());
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  /** where the viewer's Close returns to: the page that opened it */
  const returnTo = useRef('/');
  const go = useCallback((path: string) => {
    if (path.startsWith('/viewer/') && !location.pathname.startsWith('/viewer/')) returnTo.current = location.pathname + location.search;
    history.pushState(null, '', path);
    setRoute(parseRoute());
  }, []);
  const closeViewer = useCallback(() => go(returnTo.current), [go]);

  const signOut = useCallback(async (why?: string) => {
    try {
      await logout();
    } catch {
      // the session may already be gone
    }
    setNotice(why);
    setMe(null);
  }, []);

  const prewarmViewer = useCallback(() => void loadViewer().then((m) => m.prewarm()), []);
  const onIdle = useCallback(() => void signOut('You were signed out after a period of inactivity.'), [signOut]);

  if (me === undefined) return <div className="loading">Loading…</div>;
  if (me === null) {
    return (
      <Login
        notice={notice}
        onSignedIn={(s) => {
          setIdleS(s.idle_timeout_s || DEFAULT_IDLE_S);
          setNotice(undefined);
          setMe({ tenant: s.tenant, user: s.user, scopes: s.scopes });
        }}
      />
    );
  }

  return (
    <div className={`app page-${route.page}`}>
      <header className="app-bar">
        <NavLink className="brand" to="/" go={go}>
          RADRIS
        </NavLink>
        <nav className="main-nav" aria-label="Pages">
          <NavLink className="nav" to="/" go={go} current={route.page === 'list'}>
            Studies
          </NavLink>
          {RIS_PAGES.map((p) => (
            <NavLink key={p.page} className="nav" to={p.path} go={go} current={route.page === p.page}>
              {p.label}
            </NavLink>
          ))}
          <NavLink className="nav" to="/qa" go={go} current={route.page === 'qa'}>
            QA
          </NavLink>
        </nav>
        <span className="who" data-testid="who">
          <span className="user">{me.user}</span> <span className="tenant">@{me.tenant}</span>
        </span>
        <NavLink className="nav" to="/security" go={go} current={route.page === 'security'}>
          Security
        </NavLink>
        <button className="sign-out" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <IdleWarning idleTimeoutS={idleS} onExpired={onIdle} />
      {route.page === 'security' ? (
        <Security />
      ) : route.page === 'report' && route.orderId ? (
        <Suspense fallback={<div className="loading">Loading…</div>}>
          <LazyReport key={route.orderId} orderId={route.orderId} user={me.user} go={go} />
        </Suspense>
      ) : route.page === 'qa' ? (
        <Suspense fallback={<div className="loading">Loading…</div>}>
          <LazyQa user={me.user} go={go} />
        </Suspense>
      ) : RIS_PAGES.some((p) => p.page === route.page) ? (
        <Suspense fallback={<div className="loading">Loading…</div>}>
          <LazyRis page={route.page as RisPageName} user={me.user} go={go} />
        </Suspense>
      ) : route.page === 'viewer' && route.studyUid ? (
        viewerModule ? (
          <viewerModule.Viewer key={`${route.studyUid}/${route.priorUid ?? ''}`} studyUid={route.studyUid} priorUid={route.priorUid} onClose={closeViewer} />
        ) : (
          <Suspense fallback={<div className="loading">Loading the viewer…</div>}>
            <LazyViewer key={`${route.studyUid}/${route.priorUid ?? ''}`} studyUid={route.studyUid} priorUid={route.priorUid} onClose={closeViewer} />
          </Suspense>
        )
      ) : (
        <StudyList
          prewarm={prewarmViewer}
          initial={savedSearch()}
          onOpen={(uid, prior) => {
            resetMetrics();
            go(`/viewer/${uid}${prior ? `?prior=${prior}` : ''}`);
          }}
        />
      )}
    </div>
  );
}
