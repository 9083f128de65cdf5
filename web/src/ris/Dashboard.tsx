// The department's dashboard (GET /analytics): turnaround per modality and per radiologist,
// the queues by state, the reading load and the resources' utilisation, over a chosen range.

import { useEffect, useMemo, useState } from 'react';
import { ORDER_STATES, errorText, getAnalytics, type Analytics } from '../lib/ris';
import { MINUTE_STEPS, addDays, compactMinutes, dayStart, formatMinutes, isoDay, stateColour, stateLabel } from '../lib/risview';
import { BarChart } from './BarChart';
import { ErrorLine, type PageProps } from './common';

const RANGES = [
  { days: 1, label: 'Last 24 hours' },
  { days: 7, label: 'Last 7 days' },
  { days: 30, label: 'Last 30 days' },
  { days: 90, label: 'Last 90 days' },
];

const STEP = { scan: '#4da3ff', prelim: '#ffb020', final: '#4cd27a' };

export function Dashboard(_: PageProps) {
  const [range, setRange] = useState('7');
  const [from, setFrom] = useState(() => addDays(isoDay(new Date()), -7));
  const [to, setTo] = useState(() => isoDay(new Date()));
  const [data, setData] = useState<Analytics>();
  const [error, setError] = useState<string>();

  const window_ = useMemo(() => {
    if (range === 'custom') {
      if (!from || !to || from > to) return null;
      return { from: dayStart(from).toISOString(), to: dayStart(addDays(to, 1)).toISOString() };
    }
    const now = new Date();
    return { from: new Date(now.getTime() - Number(range) * 86_400_000).toISOString(), to: now.toISOString() };
  }, [range, from, to]);

  useEffect(() => {
    if (!window_) return;
    let live = true;
    setError(undefined);
    getAnalytics(window_.from, window_.to)
      .then((d) => live && setData(d))
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [window_]);

  const queues = useMemo(() => {
    const q = data?.queues ?? {};
    const known = ORDER_STATES.filter((s) => q[s] !== undefined);
    const other = Object.keys(q).filter((s) => !(ORDER_STATES as readonly string[]).includes(s));
    return [...known, ...other].map((s) => ({ label: stateLabel(s), values: [(q as Record<string, number>)[s]], colour: stateColour(s) }));
  }, [data]);

  const minutes = (v: number) => compactMinutes(v);

  return (
    <main className="ris-page dashboard-page">
      <div className="ris-toolbar">
        <h2>Dashboard</h2>
        <label>
          Range{' '}
          <select aria-label="Range" value={range} onChange={(e) => setRange(e.target.value)}>
            {RANGES.map((r) => (
              <option key={r.days} value={String(r.days)}>
                {r.label}
              </option>
            ))}
            <option value="custom">Custom…</option>
          </select>
        </label>
        {range === 'custom' && (
          <>
            <label>
              From <input type="date" value={from} onChange={(e) => setFrom(e.target.value)} />
            </label>
            <label>
              To <input type="date" value={to} onChange={(e) => setTo(e.target.value)} />
            </label>
            {!window_ && <span className="error">The range ends before it starts.</span>}
          </>
        )}
      </div>
      <ErrorLine error={error} />
      {!data && !error && <p className="loading">Loading…</p>}
      {data && (
        <div className="charts">
          <BarChart
            testId="chart-turnaround-modality"
            title="Turnaround by modality (mean)"
            series={[
              { name: 'Order → scan', colour: STEP.scan },
              { name: 'Scan → preliminary', colour: STEP.prelim },
              { name: 'Preliminary → final', colour: STEP.final },
            ]}
            rows={data.turnaround.by_modality.map((m) => ({
              label: m.modality,
              values: [m.order_to_scan_min, m.scan_to_preliminary_min, m.preliminary_to_final_min],
            }))}
            format={minutes}
            steps={MINUTE_STEPS}
            extraColumns={[
              { header: 'Order → final', cells: data.turnaround.by_modality.map((m) => (m.order_to_final_min === null ? '—' : minutes(m.order_to_final_min))) },
              { header: 'Orders', cells: data.turnaround.by_modality.map((m) => String(m.n)) },
            ]}
          />
          <BarChart
            testId="chart-turnaround-radiologist"
            title="Reporting time by radiologist (mean, from images complete)"
            mode="grouped"
            series={[
              { name: 'To preliminary', colour: STEP.prelim },
              { name: 'To final', colour: STEP.final },
            ]}
            rows={data.turnaround.by_radiologist.map((r) => ({ label: r.radiologist, values: [r.images_to_preliminary_min, r.images_to_final_min] }))}
            format={minutes}
            steps={MINUTE_STEPS}
            extraColumns={[{ header: 'Orders', cells: data.turnaround.by_radiologist.map((r) => String(r.n)) }]}
          />
          <BarChart testId="chart-queues" title="Orders by state" series={[{ name: 'Orders', colour: '#4da3ff' }]} rows={queues} minMax={1} />
          <BarChart
            testId="chart-reading-load"
            title="Open reading work by radiologist"
            series={[{ name: 'Open cases', colour: '#b48cff' }]}
            rows={data.reading_load.map((r) => ({ label: r.radiologist, values: [r.open] }))}
            minMax={1}
          />
          <BarChart
            testId="chart-utilisation"
            title="Resource utilisation"
            series={[{ name: 'Utilisation', colour: '#38c7d6' }]}
            rows={data.utilisation.map((u) => ({ label: u.name, values: [u.utilisation <= 1 ? u.utilisation * 100 : u.utilisation] }))}
            format={(v) => `${Math.round(v)} %`}
            minMax={100}
            extraColumns={[
              { header: 'Booked', cells: data.utilisation.map((u) => formatMinutes(u.booked_min)) },
              { header: 'Open', cells: data.utilisation.map((u) => formatMinutes(u.open_min)) },
            ]}
          />
        </div>
      )}
    </main>
  );
}
