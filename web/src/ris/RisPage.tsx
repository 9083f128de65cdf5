// The RIS pages, loaded on demand (the study list's bundle stays small): order entry, the
// scheduling calendar, the technologist's and the radiologist's worklists, reconciliation
// and the dashboard.

import { Dashboard } from './Dashboard';
import { Orders } from './Orders';
import { Reading } from './Reading';
import { Reconciliation } from './Reconciliation';
import { Schedule } from './Schedule';
import { Tech } from './Tech';
import type { PageProps } from './common';

export type RisPageName = 'orders' | 'schedule' | 'tech' | 'reading' | 'reconciliation' | 'dashboard';

export function RisPage({ page, ...props }: PageProps & { page: RisPageName }) {
  switch (page) {
    case 'orders':
      return <Orders {...props} />;
    case 'schedule':
      return <Schedule {...props} />;
    case 'tech':
      return <Tech {...props} />;
    case 'reading':
      return <Reading {...props} />;
    case 'reconciliation':
      return <Reconciliation {...props} />;
    case 'dashboard':
      return <Dashboard {...props} />;
  }
}
