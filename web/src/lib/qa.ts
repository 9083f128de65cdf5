// Peer review (RADPEER-style) and the quality figures, the pure part of the QA page: the
// scores and what they mean, the scoring form's rules (2 and 3 need a significance, 1 takes
// none), the score distribution in a fixed order for the chart, and small formatting helpers.

import type { PeerReview, Quality } from './reports';

export type Score = 1 | 2 | 3;
export type Significance = '' | 'a' | 'b';

export const SCORES: readonly Score[] = [1, 2, 3];

export const SCORE_LABEL: Record<Score, string> = {
  1: 'Concur with the interpretation',
  2: 'Discrepancy in interpretation, not ordinarily expected to be made',
  3: 'Discrepancy in interpretation, should be made most of the time',
};

export const SIGNIFICANCE_LABEL: Record<'a' | 'b', string> = {
  a: 'Unlikely to be clinically significant',
  b: 'Likely to be clinically significant',
};

/** The server's limit on a review comment (characters). */
export const COMMENT_MAX = 4096;

/** The score distribution's categories, in the chart's order. */
export const SCORE_KEYS = ['1', '2a', '2b', '3a', '3b'] as const;
export type ScoreKey = (typeof SCORE_KEYS)[number];

export const SCORE_KEY_LABEL: Record<ScoreKey, string> = {
  '1': 'Concur',
  '2a': 'Discrepancy, not ordinarily expected; unlikely significant',
  '2b': 'Discrepancy, not ordinarily expected; likely significant',
  '3a': 'Discrepancy, should be made; unlikely significant',
  '3b': 'Discrepancy, should be made; likely significant',
};

export const SCORE_KEY_COLOUR: Record<ScoreKey, string> = {
  '1': '#4cd27a',
  '2a': '#ffd166',
  '2b': '#ffb020',
  '3a': '#ff8a65',
  '3b': '#ff6b6b',
};

/** Axis steps for counts: whole numbers only. */
export const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000];

/** The scoring form of one review; score 0 while none is chosen. */
export interface ReviewForm {
  score: Score | 0;
  significance: Significance;
  comment: string;
}

export const emptyReviewForm = (): ReviewForm => ({ score: 0, significance: '', comment: '' });

/** Whether a score takes a significance (a or b): 2 and 3 do, 1 does not. */
export const needsSignificance = (score: number): boolean => score === 2 || score === 3;

/** The form after choosing a score: choosing 1 clears the significance (disabled for 1). */
export function withScore(f: ReviewForm, score: Score): ReviewForm {
  return { ...f, score, significance: needsSignificance(score) ? f.significance : '' };
}

/** What keeps the form from being sent (empty when it may be). */
export function reviewProblems(f: ReviewForm): string[] {
  const out: string[] = [];
  if (!SCORES.includes(f.score as Score)) out.push('Choose a score.');
  else if (needsSignificance(f.score) && f.significance !== 'a' && f.significance !== 'b')
    out.push(`Score ${f.score} needs the clinical significance (a or b).`);
  else if (!needsSignificance(f.score) && f.significance !== '') out.push('Score 1 (concur) takes no significance.');
  if ([...f.comment].length > COMMENT_MAX) out.push(`The comment is longer than ${COMMENT_MAX} characters.`);
  return out;
}

export const reviewValid = (f: ReviewForm): boolean => reviewProblems(f).length === 0;

/** The request body of a valid form (the comment trimmed), or null. */
export function reviewSubmission(f: ReviewForm): { score: Score; significance: Significance; comment: string } | null {
  if (!reviewValid(f) || f.score === 0) return null;
  return { score: f.score, significance: needsSignificance(f.score) ? f.significance : '', comment: f.comment.trim() };
}

/** `1`, `2a`, `3b`… of a done review; '' while pending. */
export function scoreKey(r: Pick<PeerReview, 'score' | 'significance'>): string {
  if (r.score === null || r.score === undefined) return '';
  return `${r.score}${needsSignificance(r.score) ? r.significance : ''}`;
}

export const isDone = (r: Pick<PeerReview, 'reviewed_at' | 'score'>): boolean => !!r.reviewed_at || (r.score !== null && r.score !== undefined);

/** The reviews split: pending (oldest assignment first), done (latest review first). */
export function splitReviews<T extends Pick<PeerReview, 'reviewed_at' | 'score' | 'assigned_at'>>(items: T[]): { pending: T[]; done: T[] } {
  const by = (k: (t: T) => string | null) => (a: T, b: T) => (k(a) ?? '').localeCompare(k(b) ?? '');
  const pending = items.filter((r) => !isDone(r)).sort(by((r) => r.assigned_at));
  const done = items
    .filter(isDone)
    .sort(by((r) => r.reviewed_at))
    .reverse();
  return { pending, done };
}

/** The score distribution in the chart's order: the five categories, then any other key the server sent. */
export function scoreDistribution(byScore: Quality['by_score'] | null | undefined): { key: string; count: number }[] {
  const b = byScore ?? {};
  const known = SCORE_KEYS.map((key) => ({ key, count: Number(b[key] ?? 0) || 0 }));
  const other = Object.keys(b)
    .filter((k) => !(SCORE_KEYS as readonly string[]).includes(k))
    .sort()
    .map((key) => ({ key, count: Number(b[key]) || 0 }));
  return [...known, ...other];
}

/** A rate (0‥1) as `12.5 %`; `—` when unknown. */
export function rateText(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '—';
  const p = Math.round(rate * 1000) / 10;
  return `${Number.isInteger(p) ? p.toFixed(0) : p.toFixed(1)} %`;
}

/** Minutes as `12.5 min` (one decimal), with hours beside from an hour on; `—` when unknown. */
export function minutesText(min: number | null | undefined): string {
  if (min === null || min === undefined || !Number.isFinite(min)) return '—';
  const m = Math.round(min * 10) / 10;
  const text = `${Number.isInteger(m) ? m.toFixed(0) : m.toFixed(1)} min`;
  if (Math.abs(m) < 60) return text;
  const total = Math.round(Math.abs(m));
  return `${text} (${m < 0 ? '−' : ''}${Math.floor(total / 60)} h ${String(total % 60).padStart(2, '0')} min)`;
}

/** The count field of "Draw reports to review": a whole number in 1‥50 (the server's range), else null. */
export function drawCount(text: string): number | null {
  if (!/^\s*\d+\s*$/.test(text)) return null;
  const n = Number(text);
  return n >= 1 && n <= 50 ? n : null;
}

/** What a draw did: how many new reviews it added. */
export function drawnText(before: number, after: number): string {
  const n = Math.max(0, after - before);
  if (n === 0) return 'No report left to draw: every signed report of another radiologist is already yours to review.';
  return n === 1 ? 'Drew 1 report to review.' : `Drew ${n} reports to review.`;
}
