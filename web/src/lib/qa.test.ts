import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  COMMENT_MAX,
  COUNT_STEPS,
  SCORE_KEYS,
  drawCount,
  drawnText,
  emptyReviewForm,
  isDone,
  minutesText,
  needsSignificance,
  rateText,
  reviewProblems,
  reviewSubmission,
  reviewValid,
  scoreDistribution,
  scoreKey,
  splitReviews,
  withScore,
  type ReviewForm,
} from './qa';
import { niceScale } from './risview';
import { assignPeerReviews, getQuality, listPeerReviews, scorePeerReview, type PeerReview } from './reports';

const form = (f: Partial<ReviewForm>): ReviewForm => ({ ...emptyReviewForm(), ...f });

describe('the scoring form', () => {
  it('needs a score', () => {
    expect(reviewValid(emptyReviewForm())).toBe(false);
    expect(reviewProblems(emptyReviewForm())).toEqual(['Choose a score.']);
    expect(reviewSubmission(emptyReviewForm())).toBeNull();
  });

  it('takes score 1 without a significance', () => {
    expect(needsSignificance(1)).toBe(false);
    expect(reviewValid(form({ score: 1 }))).toBe(true);
    expect(reviewValid(form({ score: 1, significance: 'a' }))).toBe(false);
    expect(reviewSubmission(form({ score: 1, comment: '  fine  ' }))).toEqual({ score: 1, significance: '', comment: 'fine' });
  });

  it('needs a or b for scores 2 and 3', () => {
    for (const score of [2, 3] as const) {
      expect(needsSignificance(score)).toBe(true);
      expect(reviewValid(form({ score }))).toBe(false);
      expect(reviewProblems(form({ score }))[0]).toMatch(/significance/);
      expect(reviewValid(form({ score, significance: 'a' }))).toBe(true);
      expect(reviewSubmission(form({ score, significance: 'b', comment: 'missed nodule' }))).toEqual({ score, significance: 'b', comment: 'missed nodule' });
    }
  });

  it('clears the significance when 1 is chosen, keeps it between 2 and 3', () => {
    const two = withScore(form({ significance: 'b' }), 2);
    expect(two).toMatchObject({ score: 2, significance: 'b' });
    expect(withScore(two, 3)).toMatchObject({ score: 3, significance: 'b' });
    const one = withScore(two, 1);
    expect(one).toMatchObject({ score: 1, significance: '' });
    expect(reviewValid(one)).toBe(true);
  });

  it('limits the comment to the server’s length', () => {
    expect(reviewValid(form({ score: 1, comment: 'x'.repeat(COMMENT_MAX) }))).toBe(true);
    expect(reviewProblems(form({ score: 1, comment: 'x'.repeat(COMMENT_MAX + 1) }))).toEqual([`The comment is longer than ${COMMENT_MAX} characters.`]);
    // characters, not UTF-16 units
    expect(reviewValid(form({ score: 1, comment: '😀'.repeat(COMMENT_MAX) }))).toBe(true);
  });

  it('rejects a score out of range', () => {
    expect(reviewValid(form({ score: 4 as never }))).toBe(false);
  });
});

const review = (p: Partial<PeerReview>): PeerReview => ({
  id: 'r',
  report_id: 'rep',
  reviewer: 'demo',
  score: null,
  significance: '',
  comment: '',
  followup: '',
  assigned_at: '2026-01-01T10:00:00Z',
  reviewed_at: null,
  ...p,
});

describe('reviews', () => {
  it('names the score with its significance', () => {
    expect(scoreKey(review({}))).toBe('');
    expect(scoreKey(review({ score: 1 }))).toBe('1');
    expect(scoreKey(review({ score: 2, significance: 'b' }))).toBe('2b');
    expect(scoreKey(review({ score: 3, significance: 'a' }))).toBe('3a');
  });

  it('splits pending (oldest first) from done (latest first)', () => {
    const items = [
      review({ id: 'p2', assigned_at: '2026-01-02T00:00:00Z' }),
      review({ id: 'd1', score: 1, reviewed_at: '2026-01-03T00:00:00Z' }),
      review({ id: 'p1', assigned_at: '2026-01-01T00:00:00Z' }),
      review({ id: 'd2', score: 2, significance: 'a', reviewed_at: '2026-01-04T00:00:00Z' }),
    ];
    const { pending, done } = splitReviews(items);
    expect(pending.map((r) => r.id)).toEqual(['p1', 'p2']);
    expect(done.map((r) => r.id)).toEqual(['d2', 'd1']);
    expect(isDone(items[0])).toBe(false);
    expect(isDone(items[1])).toBe(true);
  });

  it('reads the draw count', () => {
    expect(drawCount('5')).toBe(5);
    expect(drawCount(' 50 ')).toBe(50);
    for (const bad of ['', '0', '51', '2.5', '-1', 'x']) expect(drawCount(bad)).toBeNull();
  });

  it('says what a draw did', () => {
    expect(drawnText(0, 1)).toBe('Drew 1 report to review.');
    expect(drawnText(2, 5)).toBe('Drew 3 reports to review.');
    expect(drawnText(3, 3)).toMatch(/^No report left to draw/);
  });
});

describe('quality figures', () => {
  it('orders the score distribution for the chart', () => {
    expect(scoreDistribution({ '2b': 1, '1': 4 })).toEqual([
      { key: '1', count: 4 },
      { key: '2a', count: 0 },
      { key: '2b', count: 1 },
      { key: '3a', count: 0 },
      { key: '3b', count: 0 },
    ]);
    expect(scoreDistribution(undefined).map((d) => d.key)).toEqual([...SCORE_KEYS]);
    // a key the page does not know still shows
    expect(scoreDistribution({ '2': 2 }).at(-1)).toEqual({ key: '2', count: 2 });
  });

  it('puts whole numbers on the count axis', () => {
    expect(niceScale(1, 5, COUNT_STEPS).ticks).toEqual([0, 1]);
    expect(niceScale(3, 5, COUNT_STEPS).ticks).toEqual([0, 1, 2, 3]);
    expect(niceScale(7, 5, COUNT_STEPS).ticks).toEqual([0, 2, 4, 6, 8]);
    expect(niceScale(130, 5, COUNT_STEPS).ticks.every(Number.isInteger)).toBe(true);
  });

  it('formats the rate and the minutes', () => {
    expect(rateText(null)).toBe('—');
    expect(rateText(0)).toBe('0 %');
    expect(rateText(0.5)).toBe('50 %');
    expect(rateText(1 / 3)).toBe('33.3 %');
    expect(minutesText(null)).toBe('—');
    expect(minutesText(12.345)).toBe('12.3 min');
    expect(minutesText(30)).toBe('30 min');
    expect(minutesText(90)).toBe('90 min (1 h 30 min)');
  });
});

describe('the peer-review routes', () => {
  afterEach(() => vi.unstubAllGlobals());

  function stub(answer: unknown, status = 200) {
    const f = vi.fn(async () => new Response(JSON.stringify(answer), { status, headers: { 'Content-Type': 'application/json' } }));
    vi.stubGlobal('fetch', f);
    return f;
  }
  const call = (f: ReturnType<typeof stub>) => {
    const [url, init] = f.mock.calls[0] as unknown as [string, RequestInit];
    return { url, method: init.method ?? 'GET', body: init.body ? JSON.parse(String(init.body)) : undefined };
  };

  it('lists, assigns, scores and reads the quality figures', async () => {
    let f = stub({ items: [review({})] });
    expect(await listPeerReviews()).toHaveLength(1);
    expect(call(f)).toEqual({ url: '/api/v1/reports/peer-reviews', method: 'GET', body: undefined });

    f = stub({ items: [review({}), review({ id: 's' })] });
    expect(await assignPeerReviews(5)).toHaveLength(2);
    expect(call(f)).toEqual({ url: '/api/v1/reports/peer-reviews/assign', method: 'POST', body: { count: 5 } });

    f = stub(review({ id: 'a/b', score: 2, significance: 'b' }));
    expect((await scorePeerReview('a/b', { score: 2, significance: 'b', comment: 'c' })).score).toBe(2);
    expect(call(f)).toEqual({ url: '/api/v1/reports/peer-reviews/a%2Fb', method: 'POST', body: { score: 2, significance: 'b', comment: 'c' } });

    f = stub({ reviews_done: 1, reviews_pending: 0, by_score: { '2b': 1 } });
    expect((await getQuality()).by_score).toEqual({ '2b': 1 });
    expect(call(f).url).toBe('/api/v1/reports/quality');
  });

  it('surfaces the server’s 422 verbatim', async () => {
    stub({ title: 'Unprocessable Entity', status: 422, detail: 'scores 2 and 3 need significance a or b' }, 422);
    await expect(scorePeerReview('x', { score: 2, significance: '', comment: '' })).rejects.toThrow('scores 2 and 3 need significance a or b');
  });
});
