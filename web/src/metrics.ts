// Timings the browser tests read (and a developer can read in the console as `radris.metrics`):
// from the click that opens a study to its first drawn image and to a complete MPR volume.

export interface ViewerMetrics {
  openedAt?: number;
  firstImageAt?: number;
  volumeReadyAt?: number;
  /** when each loading stage of the open study finished (ms since page start) */
  stages: Record<string, number>;
  /** the viewer's code and Cornerstone are loaded and initialised */
  viewerWarm?: boolean;
}

export const metrics: ViewerMetrics = { stages: {} };

export function mark(stage: string): void {
  metrics.stages[stage] ??= Math.round(performance.now());
}

export function resetMetrics(): void {
  metrics.openedAt = performance.now();
  metrics.firstImageAt = undefined;
  metrics.volumeReadyAt = undefined;
  metrics.stages = {};
}

declare global {
  interface Window {
    radris?: { metrics: ViewerMetrics; engineId: string; [k: string]: unknown };
  }
}
