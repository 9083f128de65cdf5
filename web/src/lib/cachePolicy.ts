// How much decoded image data the tab may keep. Browsers kill tabs that grow past their memory
// budget; a 2,000-image CT is ~1 GiB decoded, so the cache is capped from what the device reports
// and the least recently used images are evicted beyond it.

const MiB = 1024 * 1024;

/**
 * @param deviceMemoryGiB navigator.deviceMemory (Chrome reports 0.25–8, rounded down), undefined elsewhere
 * @param mobile a phone or tablet (smaller budgets per tab)
 * @param overrideMiB the workstation's configured budget, within [16 MiB, 4 GiB]
 */
export function cacheBytes(deviceMemoryGiB: number | undefined, mobile: boolean, overrideMiB?: number): number {
  // a workstation's own setting (localStorage `radris.cacheMiB`), e.g. for a kiosk with little memory
  if (overrideMiB !== undefined && Number.isFinite(overrideMiB) && overrideMiB > 0) {
    return Math.round(Math.min(4096, Math.max(16, overrideMiB)) * MiB);
  }
  const gib = deviceMemoryGiB && deviceMemoryGiB > 0 ? deviceMemoryGiB : mobile ? 2 : 4;
  // a quarter of the device's memory, within [256 MiB, 1.5 GiB] (1 GiB on mobile)
  const cap = (mobile ? 1024 : 1536) * MiB;
  return Math.round(Math.min(cap, Math.max(256 * MiB, (gib * 1024 * MiB) / 4)));
}

/** Whether a series' volume (bytes per voxel × voxels) fits in the cache with room for others. */
export function volumeFits(rows: number, cols: number, slices: number, bytesPerVoxel: number, budget: number): boolean {
  return rows * cols * slices * bytesPerVoxel <= budget * 0.8;
}
