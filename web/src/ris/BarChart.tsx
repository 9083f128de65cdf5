// A horizontal bar chart in plain SVG (stacked or grouped series), with its numbers in a
// table beside it: the chart is a picture for the eye, the table is the accessible data.

import { useId } from 'react';
import { barChartLayout } from '../lib/risview';

export interface ChartSeries {
  name: string;
  colour: string;
}

export interface ChartRow {
  label: string;
  values: (number | null | undefined)[];
  /** a colour for this row's bar (single-series charts, e.g. one per state) */
  colour?: string;
}

export function BarChart({
  title,
  series,
  rows,
  mode = 'stacked',
  format = (v) => String(Math.round(v)),
  minMax,
  steps,
  extraColumns,
  testId,
}: {
  title: string;
  series: ChartSeries[];
  rows: ChartRow[];
  mode?: 'stacked' | 'grouped';
  format?: (v: number) => string;
  minMax?: number;
  /** the allowed tick steps (MINUTE_STEPS for durations) */
  steps?: number[];
  /** more columns for the table only: header and one cell per row */
  extraColumns?: { header: string; cells: string[] }[];
  testId?: string;
}) {
  const id = useId();
  const l = barChartLayout(
    rows.map((r) => r.values),
    { mode, minMax, steps, rowHeight: mode === 'grouped' ? 16 + 10 * series.length : 28 },
  );
  const fmt = (v: number | null | undefined) => (typeof v === 'number' && Number.isFinite(v) ? format(v) : '—');
  const total = (r: ChartRow) => r.values.reduce<number>((a, v) => a + (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0), 0);
  const plotBottom = l.height - 22;
  return (
    <figure className="chart" data-testid={testId}>
      <figcaption id={`${id}-t`}>{title}</figcaption>
      {rows.length === 0 ? (
        <p className="muted">No data in this range.</p>
      ) : (
        <div className="chart-body">
          <div>
            <svg className="bars" viewBox={`0 0 ${l.width} ${l.height}`} width="100%" role="img" aria-labelledby={`${id}-t`} preserveAspectRatio="xMinYMin meet">
              <g className="grid">
                {l.tickX.map((x, i) => (
                  <g key={i}>
                    <line x1={x} x2={x} y1={0} y2={plotBottom} />
                    <text x={x} y={plotBottom + 15} textAnchor="middle">
                      {fmt(l.scale.ticks[i])}
                    </text>
                  </g>
                ))}
              </g>
              {rows.map((r, i) => (
                <text key={i} className="row-label" x={l.plotLeft - 6} y={l.rowY[i]} textAnchor="end" dominantBaseline="middle">
                  {r.label.length > 18 ? `${r.label.slice(0, 17)}…` : r.label}
                </text>
              ))}
              {l.rects.map((b, i) => (
                <rect
                  key={i}
                  className="bar"
                  x={b.x}
                  y={b.y}
                  width={Math.max(b.width, 1)}
                  height={b.height}
                  fill={rows[b.row].colour ?? series[b.series]?.colour ?? '#4da3ff'}
                >
                  <title>
                    {rows[b.row].label}, {series[b.series]?.name}: {fmt(b.value)}
                  </title>
                </rect>
              ))}
              {mode === 'stacked'
                ? rows.map((r, i) => {
                    const t = total(r);
                    return t > 0 ? (
                      <text key={i} className="value" x={l.plotLeft + (t / l.scale.max) * l.plotWidth + 4} y={l.rowY[i]} dominantBaseline="middle">
                        {fmt(t)}
                      </text>
                    ) : null;
                  })
                : l.rects.map((b, i) => (
                    <text key={i} className="value" x={b.x + b.width + 4} y={b.y + b.height / 2} dominantBaseline="middle">
                      {fmt(b.value)}
                    </text>
                  ))}
            </svg>
            {series.length > 1 && (
              <ul className="legend" aria-hidden="true">
                {series.map((s) => (
                  <li key={s.name}>
                    <span className="swatch" style={{ background: s.colour }} /> {s.name}
                  </li>
                ))}
              </ul>
            )}
          </div>
          <div className="chart-table">
          <table className="ris-table compact" aria-label={`${title}: numbers`}>
            <thead>
              <tr>
                <th scope="col" />
                {series.map((s) => (
                  <th key={s.name} scope="col" className="num">
                    {s.name}
                  </th>
                ))}
                {mode === 'stacked' && series.length > 1 && (
                  <th scope="col" className="num">
                    Total
                  </th>
                )}
                {extraColumns?.map((c) => (
                  <th key={c.header} scope="col" className="num">
                    {c.header}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((r, i) => (
                <tr key={i}>
                  <th scope="row">{r.label}</th>
                  {series.map((s, j) => (
                    <td key={s.name} className="num">
                      {fmt(r.values[j])}
                    </td>
                  ))}
                  {mode === 'stacked' && series.length > 1 && <td className="num">{fmt(total(r))}</td>}
                  {extraColumns?.map((c) => (
                    <td key={c.header} className="num">
                      {c.cells[i]}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          </div>
        </div>
      )}
    </figure>
  );
}
